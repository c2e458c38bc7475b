"""Whether loading a model directory would unpickle it, and so run code its files hold.

Unpickling is running code: MLflow's own advisories include models that execute code on
load (CVE-2024-37052 and its siblings). ``load_model`` refuses such a directory unless the
caller opts in (``allow_pickle=True``). The decision reads only the ``MLmodel`` file (through
MLflow's own reader, which parses YAML safely) and the file names, never the model
files' content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hokusai.sdk.model_files import PICKLE_SUFFIXES

# File names whose content is a pickle: the SDK's own pickled-model suffixes, and PyTorch's
# (torch.save pickles).
UNPICKLED_SUFFIXES = (*PICKLE_SUFFIXES, ".pt", ".pth")
PICKLE_FORMATS = frozenset({"pickle", "cloudpickle"})
# Flavours whose loaders unpickle whatever they are given.
PICKLE_FLAVORS = frozenset({"pytorch", "statsmodels", "pmdarima"})


def pickle_reasons(model_dir: Path) -> list[str]:
    """Why loading ``model_dir`` would unpickle something; empty when it would not."""
    reasons: list[str] = []
    flavors = _flavors(model_dir)
    for name, settings in sorted(flavors.items()):
        if not isinstance(settings, dict):
            continue
        stored = settings.get("serialization_format")
        if stored in PICKLE_FORMATS:
            reasons.append(f"its {name} flavour is stored as {stored}")
        if name in PICKLE_FLAVORS:
            reasons.append(f"the {name} flavour loads with pickle")
        if name == "python_function" and (
            "python_model" in settings or "cloudpickle_version" in settings
        ):
            reasons.append("it is a custom Python model, stored with cloudpickle")
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix.lower() in UNPICKLED_SUFFIXES:
            reasons.append(f"{path.relative_to(model_dir).as_posix()} is a pickle file")
    return reasons


def _flavors(model_dir: Path) -> dict[str, Any]:
    from mlflow.models import Model

    try:
        flavors = Model.load(str(model_dir / "MLmodel")).flavors
    except Exception:  # no readable MLmodel: MLflow's loader will say so
        return {}
    return flavors if isinstance(flavors, dict) else {}
