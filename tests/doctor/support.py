"""What the ``hokusai doctor`` and observability tests share: the doctor run as a user runs
it, what a failed hop must say, the gateway's counters read from its own /metrics, the stock
MLflow client's errors, a second real MLflow server that a test may stop, and a real
``hokusai serve`` process with its data directory."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner, Result

from hokusai.cli.main import app
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import free_port, reread_tracking_uri

# Where the webhook receivers of the doctor tests take deliveries.
HOOKS = "/hooks"
UNREADABLE = "INTERNAL_ERROR: Response: {"
# A fix is one sentence: no sentence end followed by the start of another.
_SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z`]")


# ---- the doctor, as a user runs it --------------------------------------------------------


@dataclass
class Doctor:
    """Runs ``hokusai doctor`` with the key and URL in the environment, no profile file."""

    config_file: Path
    runner: CliRunner = field(default_factory=CliRunner)

    def run(
        self, *args: str, url: str | None = None, key: str | None = None, **env: str | None
    ) -> Result:
        environment: dict[str, str | None] = {
            "HOKUSAI_CONFIG_FILE": str(self.config_file),
            "HOKUSAI_API_URL": url,
            "HOKUSAI_API_KEY": key,
            "COLUMNS": "250",
            **env,
        }
        return self.runner.invoke(app, ["doctor", *args], env=environment)

    def json(
        self, *args: str, url: str | None = None, key: str | None = None, **env: str | None
    ) -> tuple[int, dict[str, Any]]:
        result = self.run(*args, "--json", url=url, key=key, **env)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result.exit_code, json.loads(result.stdout)


def assert_failed(code: int, report: dict[str, Any], hop: str, *phrases: str) -> dict[str, Any]:
    """The walk stopped at ``hop``, every hop before it passed, and ``hop`` says how to fix
    it in one sentence. Returns the failing hop."""
    assert code != 0, report
    assert report["ok"] is False, report
    assert report["failed_hop"] == hop, report
    *passed, failed = report["hops"]
    assert failed["name"] == hop and failed["ok"] is False, report
    assert all(h["ok"] and h["fix"] is None for h in passed), report
    for phrase in phrases:
        assert phrase in failed["detail"], failed
    assert_one_sentence_fix(failed["fix"])
    assert isinstance(failed["ms"], float | int) and failed["ms"] >= 0
    return dict(failed)


def assert_one_sentence_fix(fix: object) -> None:
    assert isinstance(fix, str) and len(fix) > 10, fix
    assert fix[0].isupper() and fix.rstrip().endswith((".", ")")), fix
    assert not _SENTENCE_BREAK.search(fix.rstrip()[:-1]), f"more than one sentence: {fix!r}"


# ---- the gateway's own counters -----------------------------------------------------------


def metric(gateway_url: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` of the gateway's /metrics whose labels include
    ``labels`` (0 when none has them yet)."""
    response = httpx.get(gateway_url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# ---- the stock MLflow client --------------------------------------------------------------


def stock_client_error(
    monkeypatch: pytest.MonkeyPatch,
    tracking_uri: str,
    token: str | None,
    call: Callable[[MlflowClient], object] = lambda client: client.search_experiments(),
) -> str:
    """The error the stock MLflow client shows, configured the documented way. It must be
    readable: never MLflow's fallback for an answer it could not parse."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    if token is None:
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    # The error is the same after MLflow's retries; without them it comes at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    reread_tracking_uri()
    try:
        with pytest.raises(MlflowException) as raised:
            call(MlflowClient())
    finally:
        reread_tracking_uri()
    text = str(raised.value)
    assert UNREADABLE not in text, text
    return text


# ---- a second MLflow server, to stop ------------------------------------------------------


class SpareMlflow:
    """A real MLflow server started in the background, so that its start overlaps the
    session's own. One thread starts it, keeps it and stops it: MLflow's child process is
    bound to the thread that spawned it (PR_SET_PDEATHSIG), so that thread must live as
    long as the server."""

    def __init__(self, root: Path) -> None:
        self.process = MlflowProcess(
            port=free_port(),
            backend_store_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifacts_destination=str(root / "artifacts"),
            workers=1,
            log_file=root / "mlflow.log",
        )
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spare-mlflow", daemon=True)

    def _run(self) -> None:
        try:
            self.process.start()
        except BaseException as exc:  # reported to the test that waits for it
            self.error = exc
        finally:
            self._started.set()
        self._stop.wait()
        self.process.stop()

    def begin(self) -> None:
        self._thread.start()

    def ready(self, timeout: float = 180.0) -> MlflowProcess:
        if not self._started.wait(timeout):
            raise RuntimeError(f"the spare MLflow did not start within {timeout:g} s")
        if self.error is not None:
            raise RuntimeError(f"the spare MLflow did not start: {self.error}")
        return self.process

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=150)
        if self._thread.is_alive():
            self.process.stop()


# ---- `hokusai serve`, as an operator starts it -----------------------------------------------


@dataclass
class Served:
    """A ``hokusai serve`` process in front of the session's MLflow, and its data directory."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    url: str
    mlflow_url: str
    log: Path

    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    lines.append(entry)
        return lines
