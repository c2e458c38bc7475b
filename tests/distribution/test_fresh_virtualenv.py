"""The SDK and the client CLI from the built wheel, in fresh virtualenvs holding only the
base install (and scikit-learn, which a user registering an estimator has): the LSCOR
walkthrough and the client commands against a gateway of the full environment, at both
ends of the MLflow range the wheel admits (``MLFLOW_ENDS``).

Each virtualenv is created once per session; installing into one takes minutes on a busy
machine, hence ``reliability`` (``make reliability``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.version import __version__
from tests.distribution.support import MLFLOW_ENDS, Distribution
from tests.helpers import RunningGateway, free_port, sqlite_gateway

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

WALKTHROUGH = Path(__file__).with_name("walkthrough.py")

# The first MLflow that saves scikit-learn estimators as skops with trusted types.
SKOPS_SINCE = Version("3.9")


def outside_this_tree() -> dict[str, str]:
    """This process's environment without what would put this tree's sources on the
    path (pip would take ``src/`` on ``PYTHONPATH`` for the distribution already
    installed, and skip the wheel)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@dataclass(frozen=True)
class Virtualenv:
    python: Path
    installed: dict[str, str]

    @property
    def mlflow(self) -> Version:
        return Version(self.installed["mlflow-skinny"])

    def run(
        self, args: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``args[0]`` from the virtualenv's bin/, run outside this tree: the wheel's
        hokusai only, no profile of the user's, no MLflow telemetry."""
        environment = {
            "PATH": os.environ["PATH"],
            "HOME": str(cwd),
            "HOKUSAI_CONFIG_FILE": str(cwd / "no-profile.json"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "COLUMNS": "250",
            **(env or {}),
        }
        return subprocess.run(
            [str(self.python.parent / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=600,
            env=environment,
            cwd=cwd,
            check=False,
        )


@pytest.fixture(scope="module")
def venv_gateway(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    with sqlite_gateway(tmp_path_factory.mktemp("gateway"), mlflow_server.url) as running:
        yield running


@pytest.fixture(scope="module", params=sorted(MLFLOW_ENDS))
def base_virtualenv(
    request: pytest.FixtureRequest,
    built_distribution: Distribution,
    tmp_path_factory: pytest.TempPathFactory,
) -> Virtualenv:
    root = tmp_path_factory.mktemp(f"venv-{request.param}")
    subprocess.run(
        [sys.executable, "-m", "venv", str(root)], check=True, timeout=300, env=outside_this_tree()
    )
    pip = [str(root / "bin/python"), "-m", "pip", "install", "--quiet"]
    pinned = MLFLOW_ENDS[request.param]
    done = subprocess.run(
        [*pip, f"{built_distribution.wheel}[sklearn]", *([pinned] if pinned else [])],
        capture_output=True,
        text=True,
        timeout=1500,
        env=outside_this_tree(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = subprocess.run(
        [str(root / "bin/python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=outside_this_tree(),
        check=True,
    )
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    if pinned:
        assert f"mlflow-skinny=={installed['mlflow-skinny']}" == pinned
    return Virtualenv(python=root / "bin/python", installed=installed)


def test_the_base_install_holds_none_of_the_server_packages(base_virtualenv: Virtualenv) -> None:
    installed = base_virtualenv.installed
    assert installed["hokusai-ml-platform"] == __version__
    for server_only in ("mlflow", "flask", "gunicorn", "sqlalchemy", "alembic", "aiohttp"):
        assert server_only not in installed, server_only
    for server_only in ("psycopg", "prometheus-client", "redis", "standardwebhooks", "yarl"):
        assert server_only not in installed, server_only
    for server_only in ("pydantic-settings", "fastapi-offline"):
        assert server_only not in installed, server_only
    assert "mlflow-skinny" in installed


def test_the_lscor_walkthrough_from_the_wheel(
    base_virtualenv: Virtualenv, venv_gateway: RunningGateway, tmp_path: Path
) -> None:
    key = venv_gateway.create_key(Scope.WRITE)
    name = "LSCOR-" + base_virtualenv.installed["mlflow-skinny"].replace(".", "-")
    name += "-" + os.urandom(3).hex()
    done = base_virtualenv.run(["python", str(WALKTHROUGH), venv_gateway.url, key, name], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["mlflow"] == base_virtualenv.installed["mlflow-skinny"]
    # skops where this MLflow can save it, else cloudpickle; the version's tag says which.
    expected_format = "skops" if base_virtualenv.mlflow >= SKOPS_SINCE else "cloudpickle"
    assert seen["serialization_format"] == [expected_format, expected_format]
    assert [kind for _, kind, _ in seen["lineage"]] == ["baseline", "improved"]
    assert seen["lineage"][1][2] == f"{name}/{seen['baseline']}"
    assert seen["tokenized"][0] == seen["token_latest"][0] == name + "-token"
    assert seen["predicted"] == seen["expected"]
    # The wheel's hokusai (not this tree's), and none of its server modules.
    assert Path(seen["hokusai_file"]).is_relative_to(base_virtualenv.python.parent.parent)
    server_modules = [
        m for m in seen["hokusai_modules"] if m.startswith(("hokusai.gateway", "hokusai.db"))
    ]
    assert server_modules == []


def test_skops_is_refused_before_anything_is_sent_where_mlflow_cannot_save_it(
    base_virtualenv: Virtualenv, tmp_path: Path
) -> None:
    # Nothing listens at the URL: a request would end in RegistryUnavailableError.
    script = tmp_path / "ask_for_skops.py"
    script.write_text(
        "import json\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from hokusai import HokusaiError, ModelRegistry, RegistryUnavailableError\n"
        "model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])\n"
        f"registry = ModelRegistry(api_key='k', api_url='http://127.0.0.1:{free_port()}',\n"
        "                          max_retry_time=0)\n"
        "try:\n"
        "    registry.register_baseline(model, 'refused', serialization_format='skops')\n"
        "except HokusaiError as error:\n"
        "    unavailable = isinstance(error, RegistryUnavailableError)\n"
        "    print(json.dumps([type(error).__name__, unavailable, str(error)]))\n"
    )
    done = base_virtualenv.run(["python", str(script)], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    kind, unavailable, message = json.loads(done.stdout.strip().splitlines()[-1])
    if base_virtualenv.mlflow >= SKOPS_SINCE:
        assert unavailable, message  # skops accepted: it went on to the (absent) registry
    else:
        assert kind == "ValidationError", message
        mlflow = base_virtualenv.installed["mlflow-skinny"]
        assert f"the installed MLflow {mlflow} cannot save the skops format" in message
        assert "serialization_format='cloudpickle'" in message


def test_the_client_commands_from_the_wheel(
    base_virtualenv: Virtualenv, venv_gateway: RunningGateway, tmp_path: Path
) -> None:
    admin_key = venv_gateway.create_key(Scope.ADMIN)
    admin = {"HOKUSAI_API_URL": venv_gateway.url, "HOKUSAI_API_KEY": admin_key}
    whoami = base_virtualenv.run(["hokusai", "whoami", "--json"], tmp_path, admin)
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["scope"] == "admin"

    name = "wheel-" + os.urandom(3).hex()
    created = base_virtualenv.run(
        ["hokusai", "keys", "create", "--name", name, "--scope", "read", "--json"], tmp_path, admin
    )
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)["record"]
    assert (record["name"], record["scope"], record["state"]) == (name, "read", "active")

    listed = base_virtualenv.run(["hokusai", "keys", "list", "--json"], tmp_path, admin)
    assert listed.returncode == 0, listed.stderr
    assert record["id"] in [k["id"] for k in json.loads(listed.stdout)]

    audit = base_virtualenv.run(
        ["hokusai", "audit", "--action", "keys.create", "--json"], tmp_path, admin
    )
    assert audit.returncode == 0, audit.stderr
    assert json.loads(audit.stdout)[0]["detail"]["created"] == record["id"]

    models = base_virtualenv.run(["hokusai", "models", "list", "--json"], tmp_path, admin)
    assert models.returncode == 0, models.stderr
    assert isinstance(json.loads(models.stdout), list)

    # The server's side, and the local store, say what to install.
    for args in (["serve"], ["keys", "list", "--data-dir", str(tmp_path)]):
        refused = base_virtualenv.run(["hokusai", *args], tmp_path)
        assert refused.returncode == 1, refused.stderr
        assert "needs the server extra: pip install 'hokusai-ml-platform[server]'" in refused.stderr
        assert "Traceback" not in refused.stderr
