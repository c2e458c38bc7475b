"""``import hokusai``, the SDK and the client side of the CLI work where none of the
server's packages can be imported, and the server-side commands say which extra to
install.

Each check runs in a child process whose imports of the server packages fail as if they
were not installed. The SDK in it registers a model through a real gateway and loads it
back; the CLI in it (hokusai's own modules all present, as in a base install, their
server packages not) manages keys, reads the audit log and lists models through a real
gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from hokusai.admin.actor import Actor, Origin
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.timestamps import utcnow
from tests.helpers import RunningGateway

from .blocked_imports import (
    HOKUSAI_SERVER_MODULES,
    MLFLOW_SKINNY_OWN,
    NOT_IN_THE_BASE_INSTALL,
    SERVER_PACKAGES,
    prelude,
)

pytestmark = pytest.mark.integration

SERVER_INSTALL = "needs the server extra: pip install 'hokusai-ml-platform[server]'"
# The one part of hokusai.webhooks the client side loads: the records that the answers of
# a remote gateway become (no server package behind them).
CLIENT_RECORDS = ("hokusai.webhooks", "hokusai.webhooks.records")


def run_blocked(
    code: str,
    *,
    blocked: tuple[str, ...] = SERVER_PACKAGES,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    # No profile of the user's: a config file that does not exist.
    no_profile = os.path.join(tempfile.gettempdir(), "hokusai-no-profile", "config.json")
    environment = {**os.environ, "HOKUSAI_CONFIG_FILE": no_profile, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", prelude(blocked) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


@dataclass(frozen=True)
class CliRun:
    """``hokusai ARGS`` run where only the base install is: its exit code and output,
    the server packages anything tried to import, and the server modules it loaded."""

    exit_code: int
    stdout: str
    stderr: str
    attempts: list[str]
    loaded: list[str]


def run_cli(args: list[str], env: dict[str, str] | None = None) -> CliRun:
    watched = (*HOKUSAI_SERVER_MODULES, *MLFLOW_SKINNY_OWN, "mlflow")
    done = run_blocked(
        f"""
        import json, sys
        from hokusai.cli.main import app
        try:
            app({args!r}, prog_name="hokusai")
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        loaded = sorted(m for m in sys.modules if m not in {CLIENT_RECORDS!r}
                        and any(m == w or m.startswith(w + ".") for w in {watched!r}))
        seen = {{"exit": code, "attempts": BLOCKED_ATTEMPTS, "loaded": loaded}}
        print("\\n" + json.dumps(seen), file=sys.stderr)
        """,
        blocked=NOT_IN_THE_BASE_INSTALL,
        env=env,
    )
    before, _, last = done.stderr.rstrip().rpartition("\n")
    try:
        seen: dict[str, Any] = json.loads(last)
    except ValueError:
        pytest.fail(f"hokusai {' '.join(args)} did not finish: {done.stderr[-3000:]}")
    return CliRun(seen["exit"], done.stdout, before, seen["attempts"], seen["loaded"])


def operator() -> Actor:
    return Actor.operator(Origin.command("tests"))


def test_the_blocker_really_blocks() -> None:
    done = run_blocked("import sqlalchemy")
    assert done.returncode != 0
    assert "No module named 'sqlalchemy'" in done.stderr


def test_import_hokusai_loads_no_server_module() -> None:
    done = run_blocked(
        f"""
        import json, sys
        import hokusai, hokusai.core
        from hokusai import ModelRegistry
        server = [m for m in sys.modules
                  if any(m == b or m.startswith(b + ".") for b in {SERVER_PACKAGES!r})]
        print(json.dumps({{"loaded": server, "attempts": BLOCKED_ATTEMPTS}}))
        """
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"loaded": [], "attempts": []}


def test_the_sdk_registers_and_loads_a_model_without_the_server_packages(
    gateway: RunningGateway,
) -> None:
    key = gateway.create_key(Scope.WRITE)
    done = run_blocked(
        f"""
        import json
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from hokusai import ModelRegistry

        features = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
        labels = np.array([0, 1, 0, 1])
        model = LogisticRegression().fit(features, labels)
        with ModelRegistry(api_key={key!r}, api_url={gateway.url!r}, max_retry_time=30) as r:
            result = r.register_baseline(model, model_type="light_sdk", metrics={{"auroc": 1.0}})
            # MLflow 2.x saves cloudpickle: the caller trusts the model it just registered.
            loaded = r.load_model(f"{{result.name}}/{{result.version}}", allow_pickle=True)
            predicted = [int(p) for p in loaded.predict(features)]
        print(json.dumps({{"name": result.name, "version": str(result.version),
                          "predicted": predicted, "attempts": BLOCKED_ATTEMPTS}}))
        """,
        blocked=tuple(p for p in SERVER_PACKAGES if p not in MLFLOW_SKINNY_OWN),
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["name"] == "light_sdk"
    assert seen["predicted"] == [0, 1, 0, 1]
    # MLflow itself probes for optional packages (SQLAlchemy, …); hokusai's modules stay
    # out of it.
    assert not [m for m in seen["attempts"] if m.startswith("hokusai.")], seen["attempts"]


def says_what_to_install(run: CliRun, what: str) -> None:
    """Exit 1 with the one message of ``cli/lazy_commands.py``, naming the package missing."""
    assert run.exit_code == 1, (run.stdout, run.stderr)
    assert f"{what} {SERVER_INSTALL}" in run.stderr
    assert any(f"package {name!r} is not installed" in run.stderr for name in run.attempts)
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_a_server_command_without_the_extra_says_what_to_install(command: list[str]) -> None:
    says_what_to_install(run_cli(command), f"hokusai {command[0]}")


@pytest.mark.parametrize(
    ("command", "env"),
    [
        (["keys", "list", "--json", "--data-dir", "STORE"], {}),
        (["keys", "create", "--name", "ci", "--data-dir", "STORE"], {}),
        (["webhooks", "list"], {"HOKUSAI_HOME": "STORE"}),
        (["audit", "--json"], {"HOKUSAI_DATABASE_URL": "sqlite:///STORE/hokusai.db"}),
    ],
)
def test_the_local_store_without_the_extra_says_what_to_install(
    command: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    # Administration on the server's own store needs the store's packages; through a
    # gateway it does not, and the message says so.
    store = str(tmp_path)
    run = run_cli(
        [store if a == "STORE" else a for a in command],
        {k: v.replace("STORE", store) for k, v in env.items()},
    )
    what = "hokusai " + " ".join([a for a in command if not a.startswith("-")][:2])
    says_what_to_install(run, f"{what} on the server's own store")
    assert "--api-url and --api-key" in run.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_doctor_server_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    says_what_to_install(
        run_cli(["doctor", "--server", "--data-dir", str(tmp_path)]), "hokusai doctor --server"
    )


def test_help_lists_every_command_without_the_extra() -> None:
    run = run_cli(["--help"])
    assert run.exit_code == 0, run.stderr
    for name in ("serve", "worker", "keys", "login", "whoami", "models", "doctor", "version"):
        assert name in run.stdout


def test_the_version_command_needs_nothing_of_the_server() -> None:
    done = run_blocked(
        """
        from hokusai.cli.main import app
        app(["version"], prog_name="hokusai")
        """
    )
    assert done.returncode == 0, done.stderr
    from hokusai.version import __version__

    assert done.stdout.strip() == __version__


@pytest.mark.parametrize(
    "command",
    [
        ["login", "--help"],
        ["whoami", "--help"],
        ["models", "--help"],
        ["models", "list", "--help"],
        ["doctor", "--help"],
        ["gc", "--help"],
        ["keys", "--help"],
        ["webhooks", "--help"],
        ["audit", "--help"],
    ],
)
def test_a_client_command_runs_without_the_extra(command: list[str]) -> None:
    run = run_cli(command)
    assert run.exit_code == 0, run.stderr
    assert "needs the server extra" not in run.stdout + run.stderr
    assert "Usage: hokusai " + command[0] in run.stdout
    # Nothing even tried to import a server package, and no server module (nor MLflow, nor
    # a web framework) was loaded.
    assert (run.attempts, run.loaded) == ([], [])


def test_remote_key_admin_and_audit_without_the_extra(gateway: RunningGateway) -> None:
    admin_key = gateway.create_key(Scope.ADMIN, name="light admin", owner="light-ops")
    services = gateway.gateway.services
    through_gateway = {"HOKUSAI_API_URL": gateway.url, "HOKUSAI_API_KEY": admin_key}

    created = run_cli(
        ["keys", "create", "--name", "light ci", "--scope", "read", "--json"], through_gateway
    )
    assert created.exit_code == 0, created.stderr
    issued = json.loads(created.stdout)
    stored = services.keys.get(operator(), issued["record"]["id"])
    assert issued["record"] == stored.public(utcnow())
    assert (stored.name, stored.scope, stored.owner) == ("light ci", Scope.READ, "light-ops")
    # The key printed is the key stored (by its hash).
    assert services.keys.validate(operator(), issued["key"]).record == stored

    listed = run_cli(["keys", "list", "--json"], through_gateway)
    assert listed.exit_code == 0, listed.stderr
    expected = [k.public(utcnow()) for k in services.keys.list(operator())]
    ignore_last_use = [{**k, "last_used_at": None} for k in json.loads(listed.stdout)]
    assert ignore_last_use == [{**k, "last_used_at": None} for k in expected]
    assert {issued["record"]["id"], stored.id} <= {k["id"] for k in expected}

    audit = run_cli(["audit", "--json", "--action", "keys.create"], through_gateway)
    assert audit.exit_code == 0, audit.stderr
    entries = json.loads(audit.stdout)
    assert entries == [e.public() for e in services.audit.query(operator(), action="keys.create")]
    admin_id = services.keys.get(operator(), admin_key).id
    newest = entries[0]
    assert (newest["key_id"], newest["owner"], newest["method"]) == (admin_id, "light-ops", "POST")
    assert newest["detail"]["created"] == stored.id

    for run in (created, listed, audit):
        assert (run.attempts, run.loaded) == ([], [])


def test_remote_refusals_without_the_extra(gateway: RunningGateway) -> None:
    # A key that may not administer, and no key at all: the domain errors' exit codes.
    read_key = gateway.create_key(Scope.READ)
    denied = run_cli(
        ["keys", "list"], {"HOKUSAI_API_URL": gateway.url, "HOKUSAI_API_KEY": read_key}
    )
    assert denied.exit_code == 4, denied.stderr
    assert "Traceback" not in denied.stderr
    unsigned = run_cli(["audit"], {"HOKUSAI_API_URL": gateway.url})
    assert unsigned.exit_code == 3, unsigned.stderr
    assert "--api-key" in unsigned.stderr


def test_models_list_without_the_extra(gateway: RunningGateway) -> None:
    name = "light-list-" + os.urandom(4).hex()
    features = [[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]]
    model = LogisticRegression().fit(features, [0, 1, 0, 1])
    with ModelRegistry(api_key=gateway.create_key(Scope.WRITE), api_url=gateway.url) as writer:
        registered = writer.register_baseline(model, "light_list", model_name=name)
        expected = [v.as_dict() for v in writer.list_versions(name)]
    read_key = gateway.create_key(Scope.READ)
    run = run_cli(
        ["models", "list", "--model-name", name, "--json"],
        {"HOKUSAI_API_URL": gateway.url, "HOKUSAI_API_KEY": read_key},
    )
    assert run.exit_code == 0, run.stderr
    listed = json.loads(run.stdout)
    assert listed == expected
    assert [(v["name"], v["version"]) for v in listed] == [(name, registered.version)]
    assert listed[0]["aliases"] == ["baseline"]
    assert (run.attempts, run.loaded) == ([], [])


def test_without_skops_the_sdk_saves_cloudpickle_and_refuses_skops(
    gateway: RunningGateway,
) -> None:
    # A base install with scikit-learn but not the [sklearn] extra: no skops.
    key = gateway.create_key(Scope.WRITE)
    saved, refused = "no-skops-" + os.urandom(4).hex(), "refused-" + os.urandom(4).hex()
    done = run_blocked(
        f"""
        import json
        from sklearn.linear_model import LogisticRegression
        from hokusai import ModelRegistry, ValidationError

        model = LogisticRegression().fit([[0.0], [1.0], [0.1], [0.9]], [0, 1, 0, 1])
        with ModelRegistry(api_key={key!r}, api_url={gateway.url!r}, max_retry_time=30) as r:
            try:
                r.register_baseline(model, "no_skops", {refused!r}, serialization_format="skops")
                message = None
            except ValidationError as error:
                message = str(error)
            result = r.register_baseline(model, "no_skops", {saved!r})
            loaded = r.load_model(result.model_uri, allow_pickle=True)
            predicted = [int(p) for p in loaded.predict([[0.0], [1.0]])]
        print(json.dumps({{"refused": message, "tags": result.tags, "predicted": predicted}}))
        """,
        blocked=("skops",),
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["tags"]["hokusai_serialization_format"] == "cloudpickle"
    assert seen["predicted"] == [0, 1]
    assert "the skops package is not installed" in seen["refused"]
    assert "serialization_format='cloudpickle'" in seen["refused"]
    # The SDK says once why it saved cloudpickle.
    assert done.stderr.count("saving scikit-learn models as cloudpickle, not skops") == 1
    # The refusal came before anything was sent: no such model.
    with ModelRegistry(api_key=key, api_url=gateway.url) as reader:
        assert [v.name for v in reader.list_versions(saved)] == [saved]
        assert reader.list_versions(refused) == []
