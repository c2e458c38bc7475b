"""Which model directories would be unpickled on load (``load_model`` refuses them unless
``allow_pickle=True``), decided from the MLmodel file and the file names alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from hokusai.sdk.safe_formats import pickle_reasons


def model_dir(root: Path, mlmodel: str, *files: str) -> Path:
    root.mkdir()
    (root / "MLmodel").write_text(mlmodel)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"content is never read")
    return root


SKOPS = """\
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.skops
  sklearn:
    pickled_model: model.skops
    serialization_format: skops
"""


def test_a_skops_model_loads_without_pickle(tmp_path: Path) -> None:
    assert pickle_reasons(model_dir(tmp_path / "m", SKOPS, "model.skops")) == []


@pytest.mark.parametrize(
    ("mlmodel", "files", "reason"),
    [
        (
            SKOPS.replace("skops", "cloudpickle").replace("model.cloudpickle", "model.pkl"),
            ["model.pkl"],
            "its sklearn flavour is stored as cloudpickle",
        ),
        (SKOPS, ["model.skops", "data/helper.joblib"], "data/helper.joblib is a pickle file"),
        (
            "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
            "    python_model: python_model.bin\n    cloudpickle_version: 3.0.0\n",
            ["python_model.bin"],
            "it is a custom Python model, stored with cloudpickle",
        ),
        (
            "flavors:\n  pytorch:\n    model_data: data\n    pytorch_version: 2.3.0\n",
            ["data/model.pth"],
            "the pytorch flavour loads with pickle",
        ),
    ],
    ids=["cloudpickle", "joblib-file", "custom-pyfunc", "pytorch"],
)
def test_what_unpickles_is_named(
    tmp_path: Path, mlmodel: str, files: list[str], reason: str
) -> None:
    reasons = pickle_reasons(model_dir(tmp_path / "m", mlmodel, *files))
    assert reason in reasons, reasons
