"""The requirements the SDK records with a model it saves: the model's own packages at
their installed versions, and nothing that merely happened to be imported."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.pyfunc.model import PythonModel
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hokusai.sdk.model_files import save_model_directory
from hokusai.sdk.requirements import model_requirements

# Imported by the test process (and by the SDK's CLI), never needed to load a model.
NOT_THE_MODELS = ("pytest", "rich", "typer", "httpx", "hokusai-ml-platform")


def pinned(name: str) -> str:
    return f"{name}=={importlib.metadata.version(name)}"


@pytest.fixture(scope="module")
def pipeline() -> object:
    rows = np.random.default_rng(7).random((40, 3))
    labels = (rows[:, 0] > 0.5).astype(int)
    return make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3)).fit(rows, labels)


@pytest.mark.parametrize(
    ("serialization_format", "format_package"),
    [("skops", "skops"), ("cloudpickle", "cloudpickle"), ("pickle", None)],
)
def test_saved_requirements_name_the_models_packages_only(
    pipeline: object, tmp_path: Path, serialization_format: str, format_package: str | None
) -> None:
    directory = tmp_path / "model"
    save_model_directory(pipeline, directory, serialization_format=serialization_format)

    recorded = (directory / "requirements.txt").read_text().split()
    expected = [pinned(n) for n in ("mlflow", "scikit-learn", "numpy", "scipy", "pandas")]
    if format_package:
        expected.append(pinned(format_package))
    assert recorded == expected
    assert not [r for r in recorded if r.split("==")[0] in NOT_THE_MODELS]
    # What MLflow hands a serving environment is exactly that file.
    dependencies = Path(mlflow.pyfunc.get_model_dependencies(str(directory)))
    assert dependencies.read_text().split() == expected
    # And the model loads and predicts from it.
    loaded = mlflow.pyfunc.load_model(str(directory))
    assert len(loaded.predict(np.zeros((2, 3)))) == 2


# MLflow advises on the hints of predict() when the class is defined; the model is never
# served, so its input is never validated.
@pytest.mark.filterwarnings("ignore:.*Type hint used in the model's predict function:UserWarning")
def test_a_python_model_gets_the_pyfunc_packages() -> None:
    class Constant(PythonModel):
        def predict(self, context: object, model_input: object) -> list[int]:  # type: ignore[override]
            return [1]

    # Defined here, in a test module that no distribution installs: nothing to pin for it.
    assert model_requirements(Constant(), "python_function", "cloudpickle") == [
        pinned("mlflow"),
        pinned("cloudpickle"),
        pinned("pandas"),
    ]


@pytest.mark.integration
@pytest.mark.reliability  # builds a virtualenv from the package index: minutes
def test_the_model_predicts_in_a_virtualenv_built_only_from_its_requirements(
    pipeline: object, tmp_path: Path
) -> None:
    directory = tmp_path / "model"
    save_model_directory(pipeline, directory)
    requirements = Path(mlflow.pyfunc.get_model_dependencies(str(directory)))
    venv = tmp_path / "venv"
    # Nothing of this process leaks in: no PYTHONPATH, no site-packages of its own.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=clean)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-input", "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=1500,
        env=clean,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    rows = np.random.default_rng(11).random((8, 3))
    predicted = subprocess.run(
        [
            python,
            "-c",
            "import json, sys, numpy, mlflow.pyfunc\n"
            "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
            "rows = numpy.array(json.loads(sys.argv[2]))\n"
            "print(json.dumps([int(p) for p in model.predict(rows)]))",
            str(directory),
            json.dumps(rows.tolist()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout.strip().splitlines()[-1]) == [
        int(p)
        for p in pipeline.predict(rows)  # type: ignore[attr-defined]
    ]
