"""The SDK from the built wheel, in fresh virtualenvs holding only the base install (and
scikit-learn, which a user registering an estimator has): the LSCOR walkthrough against a
gateway of the full environment, at both ends of the MLflow range the wheel admits.

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

from conftest import gateway_settings
from helpers import RunningGateway, start_gateway
from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.version import __version__

from .conftest import Distribution

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

WALKTHROUGH = Path(__file__).with_name("walkthrough.py")

# The newest mlflow-skinny the range admits (what a plain install resolves to today), and
# the oldest: the first with the skops_trusted_types the SDK passes when saving.
MLFLOW_ENDS = {"newest": None, "oldest": "mlflow-skinny==3.9.0"}


def outside_this_tree() -> dict[str, str]:
    """This process's environment without what would put this tree's sources on the
    path (pip would take ``src/`` on ``PYTHONPATH`` for the distribution already
    installed, and skip the wheel)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@dataclass(frozen=True)
class Virtualenv:
    python: Path
    installed: dict[str, str]


@pytest.fixture(scope="module")
def venv_gateway(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("gateway")
    running = start_gateway(
        gateway_settings(f"sqlite:///{home}/hokusai.db", mlflow_server.url, home)
    )
    yield running
    running.stop()


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
    return Virtualenv(python=root / "bin/python", installed=installed)


def test_the_base_install_holds_none_of_the_server_packages(base_virtualenv: Virtualenv) -> None:
    installed = base_virtualenv.installed
    assert installed["hokusai-ml-platform"] == __version__
    for server_only in ("mlflow", "flask", "gunicorn", "sqlalchemy", "alembic", "aiohttp"):
        assert server_only not in installed, server_only
    for server_only in ("psycopg", "prometheus-client", "redis", "standardwebhooks"):
        assert server_only not in installed, server_only
    assert "mlflow-skinny" in installed


def test_the_lscor_walkthrough_from_the_wheel(
    base_virtualenv: Virtualenv, venv_gateway: RunningGateway, tmp_path: Path
) -> None:
    key = venv_gateway.create_key(Scope.WRITE)
    name = "LSCOR-" + base_virtualenv.installed["mlflow-skinny"].replace(".", "-")
    name += "-" + os.urandom(3).hex()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HOKUSAI_CONFIG_FILE": str(tmp_path / "no-profile.json"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    done = subprocess.run(
        [str(base_virtualenv.python), str(WALKTHROUGH), venv_gateway.url, key, name],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
        cwd=tmp_path,  # nothing of this tree on the path: the wheel's hokusai only
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["mlflow"] == base_virtualenv.installed["mlflow-skinny"]
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
