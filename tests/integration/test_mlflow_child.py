"""The supervised MLflow child runs only what the gateway exposes."""

from __future__ import annotations

import os
from pathlib import Path

from hokusai.server.mlflow_process import MlflowProcess


def _process_group(pgid: int) -> list[str]:
    commands = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            commands.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return commands


def test_child_starts_no_job_consumers(mlflow_server: MlflowProcess) -> None:
    # The child is a process group leader (it dies with its parent as one group).
    assert mlflow_server.pid is not None
    commands = _process_group(mlflow_server.pid)
    assert any("mlflow" in command for command in commands)
    assert not [command for command in commands if "huey" in command]
