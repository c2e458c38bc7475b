"""``<home>/runtime.json``: where the running ``hokusai serve`` really listens.

``hokusai serve`` writes it (mode 0600) once MLflow is up and removes it when it exits
cleanly, so ``hokusai doctor --server`` checks the server that is actually running —
its MLflow URL and ports — instead of the defaults. A file left behind by a server that
was killed names a pid that no longer runs: :func:`read_runtime` says so.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from hokusai.settings import write_private_file

RUNTIME_FILE = "runtime.json"


@dataclass(frozen=True)
class Runtime:
    """What one ``hokusai serve`` process listens on."""

    gateway_url: str
    mlflow_url: str
    pid: int
    host: str
    port: int
    mlflow_port: int | None  # None with an external MLflow (--mlflow-url)

    @property
    def running(self) -> bool:
        """Whether the process that wrote the file still runs."""
        return pid_running(self.pid)


def pid_running(pid: int) -> bool:
    """Whether a process with this id runs (under any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, under another user
        return True
    return True


def write_runtime(home: Path, runtime: Runtime) -> Path:
    path = home / RUNTIME_FILE
    write_private_file(path, json.dumps(asdict(runtime), indent=2) + "\n")
    return path


def remove_runtime(home: Path, pid: int) -> None:
    """Remove the file if it is still this process's (a later server may own it now)."""
    path = home / RUNTIME_FILE
    found = read_runtime(home)
    if found is not None and found.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_runtime(home: Path) -> Runtime | None:
    """The runtime file in ``home``, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads((home / RUNTIME_FILE).read_text())
        return Runtime(
            gateway_url=str(raw["gateway_url"]),
            mlflow_url=str(raw["mlflow_url"]),
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            mlflow_port=None if raw.get("mlflow_port") is None else int(raw["mlflow_port"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
