"""What the distribution tests share: the source tree they build, the MLflow versions the
SDK from the wheel is tested with, and the built distribution's files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
