"""``hokusai serve`` as an operator runs it: a real process that starts MLflow as a child,
issues the first admin key, restarts MLflow when it dies and takes every process it
started down with it on SIGTERM.

Longer than most test modules (about 560 lines): each operator scenario needs a real
process, started, disturbed and stopped in its own way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from hokusai.cli.main import app
from hokusai.keys.format import parse_key
from tests.helpers import auth, free_port, reread_tracking_uri

pytestmark = pytest.mark.integration

STARTUP_SECONDS = 150.0  # MLflow alone takes 10-30 s on a busy 2-core machine
SHUTDOWN_SECONDS = 30.0
GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


# ---- the process table, from /proc -----------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    start: int  # clock ticks after boot: tells a pid apart from a later one with the same number

    @property
    def ident(self) -> tuple[int, int]:
        return (self.pid, self.start)


def read_proc(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain anything: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return Proc(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read_proc(int(entry))) is not None:
            table[proc.pid] = proc
    return table


def descendants(pid: int) -> list[Proc]:
    table = process_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for proc in table.values():
            if proc.ppid == parent:
                found.append(proc)
                frontier.append(proc.pid)
    return found


def alive(ident: tuple[int, int]) -> bool:
    proc = read_proc(ident[0])
    return proc is not None and proc.start == ident[1] and proc.state not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def survivors(idents: set[tuple[int, int]], groups: set[int]) -> list[str]:
    """Processes still running among ``idents`` or in the process groups ``groups``."""
    left = {i for i in idents if alive(i)}
    left |= {p.ident for p in process_table().values() if p.pgid in groups and alive(p.ident)}
    return [f"{pid}: {cmdline(pid)[:120]}" for pid, _ in sorted(left)]


# ---- one `hokusai serve` ----------------------------------------------------------------------


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    mlflow_port: int
    stdout: Path
    stderr: Path
    # Every process and process group of its tree seen so far, for the final cleanup.
    seen: set[tuple[int, int]] = field(default_factory=set)
    groups: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()

    def tree(self) -> list[Proc]:
        procs = descendants(self.process.pid)
        self.seen |= {p.ident for p in procs}
        self.groups |= {p.pgid for p in procs}
        return procs

    def mlflow_child(self) -> Proc:
        [child] = [
            p
            for p in self.tree()
            if p.ppid == self.process.pid and "mlflow server" in cmdline(p.pid)
        ]
        return child

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"hokusai serve exited ({self.process.returncode}): {self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    self.tree()
                    return
            time.sleep(0.25)
        pytest.fail(f"hokusai serve was not ready within {STARTUP_SECONDS:g} s: {self.output()}")

    def terminate(self) -> float:
        """SIGTERM, as a service manager stops it; fails unless every process it started is
        gone within SHUTDOWN_SECONDS. Returns the seconds that took."""
        self.tree()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        deadline = started + SHUTDOWN_SECONDS
        while survivors(self.seen, self.groups) or self.process.poll() is None:
            if time.monotonic() > deadline:
                left = survivors(self.seen, self.groups)
                pytest.fail(f"still running {SHUTDOWN_SECONDS:g} s after SIGTERM: {left}")
            time.sleep(0.1)
        return time.monotonic() - started

    def kill_everything(self) -> None:
        """Cleanup whatever happened in the test: nothing it started may outlive it."""
        if self.process.poll() is None:
            self.tree()
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=SHUTDOWN_SECONDS)
        for pid, start in self.seen:
            if alive((pid, start)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


BANNER_COLUMNS = 40  # a narrow terminal: a printer that wraps would break the banner


def serve_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env["COLUMNS"] = str(BANNER_COLUMNS)
    return env


@contextlib.contextmanager
def running_serve(data_dir: Path, *, workers: int = 1) -> Iterator[Serve]:
    port, mlflow_port = free_port(), free_port()
    logs = data_dir.parent / f"serve-{port}"
    logs.mkdir()
    stdout, stderr = logs / "stdout", logs / "stderr"
    command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--mlflow-port", str(mlflow_port), "--workers", str(workers)]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            env=serve_environment(),
            cwd=data_dir.parent,
            start_new_session=True,
        )
    serve = Serve(process, data_dir, port, mlflow_port, stdout, stderr)
    serve.groups.add(process.pid)
    try:
        yield serve
    finally:
        serve.kill_everything()


# ---- the first start, shared by the tests below in order (the last one stops it) ------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    data_dir = tmp_path_factory.mktemp("serve") / "data"
    with running_serve(data_dir) as serve:
        serve.wait_ready()
        yield serve


def admin_key_of(serve: Serve) -> str:
    return (serve.data_dir / "admin.key").read_text().strip()


def test_first_start_prints_the_admin_key_once_and_keeps_it_private(platform: Serve) -> None:
    stdout, stderr = platform.output()
    [key] = stdout.splitlines()
    assert stdout == key + "\n", "the key alone on stdout"
    parse_key(key)
    assert key not in stderr, "the key is printed once, on stdout only"

    key_file = platform.data_dir / "admin.key"
    assert key_file.read_text() == key + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((platform.data_dir / "secret.key").stat().st_mode) == 0o600
    assert str(key_file) in stderr, "the operator is told where the key is kept"

    who = httpx.get(platform.url + "/api/v1/whoami", headers=auth(key))
    assert who.status_code == 200, who.text
    assert (who.json()["scope"], who.json()["state"]) == ("admin", "active")
    keys = httpx.get(platform.url + "/api/v1/keys", headers=auth(key)).json()["keys"]
    assert [k["id"] for k in keys] == [who.json()["id"]]
    # Issued like any key: the audit log has its creation, by the operator, not the key.
    audit = httpx.get(platform.url + "/api/v1/audit", headers=auth(key), timeout=10)
    created = [e for e in audit.json()["entries"] if e["action"] == "keys.create"]
    assert len(created) == 1, audit.json()
    assert created[0]["detail"]["target"] == who.json()["id"]
    assert key not in audit.text


def test_banner_lines_are_plain_and_paste_into_a_shell(platform: Serve) -> None:
    _, stderr = platform.output()
    key_file = platform.data_dir / "admin.key"
    expected = [
        f"  export HOKUSAI_API_URL={platform.url}",
        f"  export HOKUSAI_API_KEY=$(cat {key_file})",
        f"  export MLFLOW_TRACKING_URI={platform.url}/api/mlflow",
    ]
    lines = stderr.splitlines()
    for line in expected:
        assert line in lines, f"{line!r} is not a whole line of: {stderr}"
    # Longer than the terminal serve was given: a wrapping printer would have broken it.
    assert len(expected[1]) > BANNER_COLUMNS
    assert "\x1b[" not in stderr
    assert lines.index(f"Hokusai gateway on {platform.url}  (data {platform.data_dir})") > 0

    # Pasted into a shell, the lines configure a client of this very server.
    script = "\n".join(expected) + '\necho "$HOKUSAI_API_URL $HOKUSAI_API_KEY $MLFLOW_TRACKING_URI"'
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    url, key, tracking_uri = shell.stdout.split()
    assert (url, key, tracking_uri) == (
        platform.url,
        admin_key_of(platform),
        platform.url + "/api/mlflow",
    )
    assert httpx.get(url + "/api/v1/whoami", headers=auth(key)).status_code == 200


def test_runtime_file_names_the_running_server(platform: Serve) -> None:
    runtime_file = platform.data_dir / "runtime.json"
    assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
    runtime = json.loads(runtime_file.read_text())
    assert runtime == {
        "gateway_url": platform.url,
        "mlflow_url": f"http://127.0.0.1:{platform.mlflow_port}",
        "pid": platform.process.pid,
        "host": "127.0.0.1",
        "port": platform.port,
        "mlflow_port": platform.mlflow_port,
    }

    # `doctor --server` checks this server (its MLflow is not on the default port 5001).
    result = CliRunner().invoke(
        app,
        ["doctor", "--server", "--data-dir", str(platform.data_dir), "--json"],
        env={"HOKUSAI_MLFLOW_URL": None, "COLUMNS": "250"},
    )
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    hops = {h["name"]: h for h in report["hops"]}
    assert f"pid {platform.process.pid}" in hops["server"]["detail"]
    assert f"MLflow child on port {platform.mlflow_port}" in hops["server"]["detail"]
    assert f"127.0.0.1:{platform.mlflow_port}" in hops["mlflow"]["detail"]
    assert "runtime.json" in hops["mlflow"]["detail"]


def test_the_mlflow_child_sends_no_telemetry(platform: Serve) -> None:
    child = platform.mlflow_child()
    environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
    assert b"MLFLOW_DISABLE_TELEMETRY=true" in environ
    assert b"DO_NOT_TRACK=true" in environ


def test_stock_mlflow_client_through_serve(
    platform: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = admin_key_of(platform)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url + "/api/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", key)
    reread_tracking_uri()
    try:
        experiment_id = mlflow.create_experiment(f"e2e-{uuid.uuid4().hex[:8]}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metric("auroc", 0.87)
        fetched = MlflowClient().get_run(run.info.run_id)
    finally:
        reread_tracking_uri()
    assert fetched.data.metrics["auroc"] == 0.87
    assert fetched.info.experiment_id == experiment_id

    entries = httpx.get(platform.url + "/api/v1/audit", headers=auth(key)).json()["entries"]
    paths = {e["path"] for e in entries if e["action"] == "mlflow.write"}
    assert {"/api/2.0/mlflow/experiments/create", "/api/2.0/mlflow/runs/log-metric"} <= paths


def test_a_killed_mlflow_is_restarted(platform: Serve) -> None:
    key = admin_key_of(platform)
    assert httpx.get(platform.url + GET_BY_NAME, headers=auth(key)).status_code == 200
    old = platform.mlflow_child()
    old_group = {p.ident for p in process_table().values() if p.pgid == old.pgid}
    assert len(old_group) > 1, "MLflow runs worker processes in its group"

    os.kill(old.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    outage: list[httpx.Response] = []
    while True:
        assert time.monotonic() - killed_at < STARTUP_SECONDS, (
            f"MLflow was not back within {STARTUP_SECONDS:g} s: {platform.output()[1][-3000:]}"
        )
        response = httpx.get(platform.url + GET_BY_NAME, headers=auth(key), timeout=10)
        if response.status_code == 200 and outage:
            break
        if response.status_code != 200:
            outage.append(response)
        time.sleep(0.2)

    for response in outage:  # while MLflow was down, each answer said so, quickly
        assert response.status_code == 503, response.text
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert response.headers["retry-after"] == "1"
        assert response.elapsed.total_seconds() < 2.0
    new = platform.mlflow_child()
    assert new.ident != old.ident
    assert not [i for i in old_group if alive(i)], "the crashed MLflow's workers are gone"
    assert httpx.get(platform.url + "/ready").status_code == 200


def test_second_start_keeps_the_key_and_sigterm_stops_every_process(platform: Serve) -> None:
    key = admin_key_of(platform)
    platform.terminate()  # with one worker: uvicorn in the process of `hokusai serve` itself
    assert platform.process.returncode == 0, "a requested stop is a clean exit"
    assert not (platform.data_dir / "runtime.json").exists(), "removed on a clean exit"
    assert "stopping MLflow" in platform.output()[1]

    with running_serve(platform.data_dir, workers=2) as second:
        second.wait_ready()
        stdout, stderr = second.output()
        assert stdout == "", "no second admin key"
        assert "First start" not in stderr
        assert admin_key_of(second) == key
        keys = httpx.get(second.url + "/api/v1/keys", headers=auth(key)).json()["keys"]
        assert len(keys) == 1
        assert httpx.get(second.url + GET_BY_NAME, headers=auth(key)).status_code == 200

        tree = second.tree()
        mlflow_child = second.mlflow_child()
        in_mlflow_group = [p for p in tree if p.pgid == mlflow_child.pgid]
        assert len(in_mlflow_group) >= 3, "MLflow with its worker processes"
        gateway_workers = [p for p in tree if p.pgid == second.process.pid]
        assert len(gateway_workers) >= 2, "the gateway's worker processes"

        second.terminate()
        assert second.process.returncode == 0, "a requested stop is a clean exit"
        assert "stopping MLflow" in second.output()[1]
        assert not survivors({p.ident for p in tree}, {mlflow_child.pgid, second.process.pid})


# ---- a busy port: found before anything starts -------------------------------------------------


def serve_on_busy_port(tmp_path: Path, busy: str, **env: str) -> tuple[int, str, int]:
    """Run `hokusai serve` with the gateway's or MLflow's port taken: (exit code, stderr,
    the busy port)."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        gateway_port, mlflow_port = (
            (port, free_port()) if busy == "gateway" else (free_port(), port)
        )
        command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--data-dir"]
        command += [str(tmp_path / "data"), "--mlflow-port", str(mlflow_port)]
        environment = {**serve_environment(), "HOKUSAI_PORT": str(gateway_port), **env}
        finished = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=60, cwd=tmp_path
        )
    return finished.returncode, finished.stderr, port


@pytest.mark.parametrize("busy", ["gateway", "mlflow"])
def test_a_busy_port_fails_before_mlflow_starts(tmp_path: Path, busy: str) -> None:
    code, stderr, port = serve_on_busy_port(tmp_path, busy)

    assert code == 1, stderr
    message = " ".join(stderr.split())
    assert f"port {port} on 127.0.0.1 is already in use" in message
    option = "--port / HOKUSAI_PORT" if busy == "gateway" else "--mlflow-port"
    assert option in message
    assert "Traceback" not in stderr
    assert "starting MLflow" not in stderr and "gateway on" not in stderr
    assert not (tmp_path / "data" / "logs" / "mlflow.log").exists(), "MLflow never started"
    assert not (tmp_path / "data" / "runtime.json").exists()


# ---- no usage telemetry from the CLI's own process --------------------------------------------

# The variables that make MLflow 3 skip telemetry on its own (CI services, pytest).
_SKIP_MARKERS = {
    "DO_NOT_TRACK",
    "PYTEST_CURRENT_TEST",
    "GITHUB_ACTIONS",
    "CI",
    "CIRCLECI",
    "GITLAB_CI",
    "JENKINS_URL",
    "TRAVIS",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ARN",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "CLOUD_RUN_EXECUTION",
    "RUNBOT_HOST_URL",
    "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID",
}
_TELEMETRY_PROBE = """
import hokusai.cli.main  # what `hokusai serve` and every other command imports first
from mlflow.telemetry import get_telemetry_client
from mlflow.telemetry.utils import is_telemetry_disabled
print(is_telemetry_disabled(), get_telemetry_client())
"""


def test_the_cli_process_turns_mlflow_telemetry_off() -> None:
    # As on a user's machine: none of the markers that make MLflow skip telemetry by itself.
    environment = {k: v for k, v in serve_environment().items() if k not in _SKIP_MARKERS}
    probe = subprocess.run(
        [sys.executable, "-c", _TELEMETRY_PROBE],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=True,
    )
    assert probe.stdout.split() == ["True", "None"], probe.stdout + probe.stderr


def test_make_serve_passes_its_ports_on() -> None:
    root = Path(__file__).resolve().parents[2]
    dry = subprocess.run(
        ["make", "-n", "-C", str(root), "serve", "PORT=18080", "MLFLOW_PORT=18081"],
        capture_output=True,
        text=True,
        check=True,
    )
    command = " ".join(dry.stdout.replace("\\\n", " ").split())
    assert ".venv/bin/hokusai serve --port 18080 --mlflow-port 18081" in command, dry.stdout


# ---- banner and runtime file in front of an external MLflow (no child to wait for) ----------


def test_banner_and_runtime_file_with_an_external_mlflow(tmp_path: Path) -> None:
    port, external = free_port(), f"http://127.0.0.1:{free_port()}"
    data_dir = tmp_path / "data"
    stderr_file = tmp_path / "stderr"
    command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--data-dir", str(data_dir)]
    command += ["--mlflow-url", external]
    environment = {**serve_environment(), "HOKUSAI_PORT": str(port), "HOKUSAI_HOST": "127.0.0.1"}
    with stderr_file.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environment,
            cwd=tmp_path,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, stderr_file.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, stderr_file.read_text()
            time.sleep(0.2)

        lines = stderr_file.read_text().splitlines()
        assert f"  export HOKUSAI_API_URL={url}" in lines, lines
        assert f"  export HOKUSAI_API_KEY=$(cat {data_dir / 'admin.key'})" in lines, lines
        assert f"  export MLFLOW_TRACKING_URI={url}/api/mlflow" in lines, lines
        assert f"The admin key above is kept in {data_dir / 'admin.key'} (mode 0600)." in lines

        runtime_file = data_dir / "runtime.json"
        assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
        assert json.loads(runtime_file.read_text()) == {
            "gateway_url": url,
            "mlflow_url": external,
            "pid": process.pid,
            "host": "127.0.0.1",
            "port": port,
            "mlflow_port": None,
        }
        result = CliRunner().invoke(
            app,
            ["doctor", "--server", "--data-dir", str(data_dir), "--json", "--timeout", "2"],
            env={"HOKUSAI_MLFLOW_URL": None, "COLUMNS": "250"},
        )
        hops = {h["name"]: h for h in json.loads(result.stdout)["hops"]}
        assert hops["server"]["ok"] is True, hops
        assert f"gateway {url} (port {port})" in hops["server"]["detail"]
        assert hops["mlflow"]["ok"] is False and external in hops["mlflow"]["detail"], hops

        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=SHUTDOWN_SECONDS) == 0
        assert not runtime_file.exists(), "removed on a clean exit"
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
