"""Fixtures of the ``hokusai doctor`` and observability tests: the doctor run as a user runs
it, loopback webhook receivers, a second real MLflow server that a test may stop, and a real
``hokusai serve`` process with its data directory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hokusai.server.mlflow_process import MlflowProcess
from tests.doctor.support import HOOKS, Doctor, Served, SpareMlflow
from tests.helpers import free_port
from tests.webhooks.receiver import Answer, Receiver, always


@pytest.fixture
def doctor(tmp_path: Path) -> Doctor:
    return Doctor(config_file=tmp_path / "no-such-config.json")


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[int], Receiver]]:
    """Webhook receivers that answer every delivery to ``HOOKS`` with the given status."""
    started: list[Receiver] = []

    def make(status: int) -> Receiver:
        receiver = Receiver()
        started.append(receiver)
        body = b"receiver is broken" if status >= 400 else b"ok"
        receiver.on(HOOKS, always(Answer(status, body)))
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture(scope="session")
def spare_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpareMlflow]:
    spare = SpareMlflow(tmp_path_factory.mktemp("spare-mlflow"))
    spare.begin()
    yield spare
    spare.stop()


@pytest.fixture(scope="session", autouse=True)
def _start_spare_mlflow_early(request: pytest.FixtureRequest) -> None:
    """MLflow takes long to start on a small machine: when a selected test needs the
    spare server, start it before everything else, alongside the session's MLflow."""
    if any("spare_mlflow" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("spare_mlflow")


SERVE_STARTUP_SECONDS = 120.0


@pytest.fixture(scope="package")
def served(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    data_dir, port = root / "data", free_port()
    log = root / "serve.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--mlflow-url", mlflow_server.url]
    with log.open("wb") as stderr:
        # The first start prints the admin key on stdout: it goes nowhere (admin.key has it).
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environment,
            cwd=root,
            start_new_session=True,
        )
    running = Served(process, data_dir, f"http://127.0.0.1:{port}", mlflow_server.url, log)
    try:
        deadline = time.monotonic() + SERVE_STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"hokusai serve exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(running.url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"hokusai serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
