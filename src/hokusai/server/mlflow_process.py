"""MLflow as a supervised child process of ``hokusai serve``.

The child gets a process group of its own, so stopping it stops MLflow's worker
processes too, and asks the kernel to signal it if ``hokusai serve`` itself dies:
no orphaned MLflow is ever left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

log = logging.getLogger("hokusai.serve")

_PR_SET_PDEATHSIG = 1

# A self-hosted registry does not phone home. MLflow 3 sends usage telemetry unless one of
# these is set; it reads them when ``mlflow`` is imported, so they must be in the
# environment of every process before that import (the child's, and the CLI's own).
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def disable_telemetry(environment: dict[str, str] | os._Environ[str]) -> None:
    """Switch MLflow's usage telemetry off in ``environment`` (overriding any other value)."""
    environment.update(NO_TELEMETRY)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the process group still lets us stop it cleanly
        pass


def server_command(
    *,
    port: int,
    backend_store_uri: str,
    artifacts_destination: str,
    workers: int,
    workspaces: bool = True,
    extra_args: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The ``mlflow server`` command line of the platform's MLflow on loopback."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
        "--workers",
        str(workers),
    ]
    if workspaces:
        # Each team is one of MLflow's workspaces: MLflow itself keeps their experiments,
        # runs, models and artifacts apart (the gateway sets the workspace of every request
        # from its key).
        command.append("--enable-workspaces")
    return [*command, *extra_args]


class MlflowProcess:
    """Start, watch, restart and stop one ``mlflow server``."""

    def __init__(
        self,
        *,
        port: int,
        backend_store_uri: str,
        artifacts_destination: str,
        workers: int,
        log_file: Path,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.backend_store_uri = backend_store_uri
        self.artifacts_destination = artifacts_destination
        self.command = server_command(
            port=port,
            backend_store_uri=backend_store_uri,
            artifacts_destination=artifacts_destination,
            workers=workers,
            extra_args=extra_args or [],
        )
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, wait_seconds: float = 120.0) -> None:
        self._spawn()
        self.wait_ready(wait_seconds)
        self._watcher = threading.Thread(target=self._watch, name="mlflow-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Only the owner may read what MLflow logs (request lines, tracebacks).
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        output = os.fdopen(fd, "ab")
        env = dict(os.environ)
        # The child must not read the gateway's own settings or leak them into its logs.
        for name in list(env):
            if name.startswith("HOKUSAI_"):
                del env[name]
        disable_telemetry(env)
        # The route policy never exposes MLflow's server-side jobs, so the child need not
        # run their job consumers: each is a process of its own that costs CPU and memory.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self._process = subprocess.Popen(
            self.command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
            # What MLflow creates (its SQLite store, local artifacts) is the owner's alone.
            umask=0o077,
        )
        output.close()
        log.info("mlflow started", extra={"fields": {"pid": self._process.pid, "url": self.url}})

    def wait_ready(self, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self._process and self._process.poll() is not None:
                raise RuntimeError(
                    f"MLflow exited with code {self._process.returncode} while starting; "
                    f"its log is {self.log_file}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"MLflow did not answer on {self.url} within {wait_seconds:g} s; its log is "
            f"{self.log_file}"
        )

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(0.5)
                continue
            log.warning(
                "mlflow exited; restarting",
                extra={"fields": {"code": process.returncode, "in_seconds": backoff}},
            )
            if self._stopping.wait(backoff):
                return
            self._kill_group(process)
            self._spawn()
            self.restarts += 1
            try:
                self.wait_ready(120)
                backoff = 1.0
            except RuntimeError as exc:
                log.error("mlflow restart failed", extra={"fields": {"error": str(exc)}})
                backoff = min(backoff * 2, 30.0)

    def stop(self, grace_seconds: float = 10.0) -> None:
        self._stopping.set()
        if self._watcher:
            self._watcher.join(timeout=2)
        if self._process is not None:
            self._kill_group(self._process, grace_seconds)
            self._process = None

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_seconds)
        # Workers that ignored SIGTERM, or outlived their parent: the group goes entirely.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("mlflow did not exit", extra={"fields": {"pid": process.pid}})
