"""The requirements the SDK records with a model it saves: the model's own packages at
their installed versions, and nothing that merely happened to be imported."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
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
    expected = [pinned(n) for n in ("mlflow", "scikit-learn", "numpy", "scipy")]
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


def test_a_python_model_gets_the_pyfunc_packages() -> None:
    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: object) -> list[int]:
            return [1]

    # Defined here, in a test module that no distribution installs: nothing to pin for it.
    assert model_requirements(Constant(), "python_function", "cloudpickle") == [
        pinned("mlflow"),
        pinned("cloudpickle"),
    ]
