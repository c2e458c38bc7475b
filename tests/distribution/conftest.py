"""The distribution built once per session: ``python -m build`` of this tree, into the
session's temporary directory."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The MLflow versions the SDK from the wheel is tested with (test_fresh_virtualenv.py):
# the newest 2.x the range admits (its oldest end: MLflow 2.x cannot save skops, so the SDK
# saves cloudpickle), the server's own 3.17.2, and whatever a plain install resolves to
# (the newest 3.x). The range in pyproject.toml admits each (test_metadata.py).
MLFLOW_ENDS = {
    "2.x": "mlflow-skinny==2.22.5",
    "3.17": "mlflow-skinny==3.17.2",
    "newest": None,
}


@dataclass(frozen=True)
class Distribution:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def built_distribution(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Distribution(wheel=wheel, sdist=sdist)
