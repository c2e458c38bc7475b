"""Turning what the caller hands over into an MLflow model directory on local disk."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from hokusai.sdk.errors import ValidationError
from hokusai.sdk.requirements import model_requirements

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
TAG_SERIALIZATION_FORMAT = "hokusai_serialization_format"

# How a scikit-learn estimator is saved. ``skops`` is the safe default: loading it runs no
# code from the file. But only MLflow 3 can load it (MLflow 2.x: "Unrecognized
# serialization format: skops"); ``cloudpickle`` and ``pickle`` load everywhere, and
# loading them runs whatever code the file holds — only for files you trust.
DEFAULT_SERIALIZATION_FORMAT = "skops"
SERIALIZATION_FORMATS = ("skops", "cloudpickle", "pickle")


def check_serialization_format(model: Any, requested: str | None) -> str | None:
    """The format ``model`` will be stored in (None: not a scikit-learn model the SDK
    saves); refuses a format that does not apply, before anything is sent."""
    if requested is not None and requested not in SERIALIZATION_FORMATS:
        raise ValidationError(
            f"serialization_format must be one of {', '.join(SERIALIZATION_FORMATS)}, "
            f"not {requested!r}"
        )
    if isinstance(model, str | Path) and Path(model).is_dir():
        if requested is not None:
            raise ValidationError(
                f"{model} is an MLflow model directory, already saved in its own format: "
                "serialization_format does not apply (save it again with "
                "mlflow.sklearn.save_model(..., serialization_format=…))"
            )
        return _saved_format_of(Path(model))
    if isinstance(model, str | Path) or _is_sklearn(model):
        return requested or DEFAULT_SERIALIZATION_FORMAT
    if requested is not None:
        raise ValidationError(
            "serialization_format applies to scikit-learn estimators only, not to a "
            f"{type(model).__name__}"
        )
    return None


def save_model_directory(
    model: Any, destination: Path, *, serialization_format: str | None = None
) -> str:
    """Write ``model`` as an MLflow model into ``destination``; return its flavour.

    ``model`` is a fitted estimator (scikit-learn), an ``mlflow.pyfunc.PythonModel``,
    a directory that already holds an MLflow model (an ``MLmodel`` file), or a pickle /
    joblib file of a scikit-learn estimator (unpickling runs code: only load your own).
    A scikit-learn estimator is saved in ``serialization_format`` (default ``skops``).
    """
    import mlflow

    check_model(model)
    check_serialization_format(model, serialization_format)
    if isinstance(model, str | Path):
        path = Path(model)
        if path.is_dir():
            _copy_tree(path, destination)
            return _flavour_of(destination)
        return save_model_directory(
            _load_pickle(path), destination, serialization_format=serialization_format
        )
    if _is_sklearn(model):
        chosen = serialization_format or DEFAULT_SERIALIZATION_FORMAT
        mlflow.sklearn.save_model(
            model,
            str(destination),
            serialization_format=chosen,
            skops_trusted_types=_skops_types_of(model) if chosen == "skops" else None,
            # Named by the SDK, not inferred by MLflow (sdk/requirements.py says why).
            pip_requirements=model_requirements(model, "sklearn", chosen),
        )
        return "sklearn"
    mlflow.pyfunc.save_model(
        str(destination),
        python_model=model,
        pip_requirements=model_requirements(model, "python_function", "cloudpickle"),
    )
    return "python_function"


def check_model(model: Any) -> None:
    """Refuse what :func:`save_model_directory` cannot save, before anything is sent."""
    if isinstance(model, str | Path):
        path = Path(model)
        if path.is_dir():
            if not (path / "MLmodel").is_file():
                raise ValidationError(
                    f"{path} is a directory without an MLmodel file: save the model with "
                    "mlflow.<flavour>.save_model(), or pass the fitted estimator itself"
                )
        elif not path.is_file():
            raise ValidationError(f"model path {path} does not exist")
        elif path.suffix not in PICKLE_SUFFIXES:
            raise _not_a_pickle(path)
        return
    if _is_sklearn(model):
        return
    import mlflow.pyfunc

    if isinstance(model, mlflow.pyfunc.PythonModel):
        return
    raise ValidationError(
        f"cannot register a {type(model).__name__}: pass a fitted scikit-learn estimator, an "
        "mlflow.pyfunc.PythonModel, a directory saved by mlflow.<flavour>.save_model(), or a "
        "runs:/ or models:/ URI"
    )


def load_model_file(path: Path) -> Any:
    """The model object in ``path``: a pickle/joblib file, or an MLflow model directory
    (loaded in its own flavour when it is scikit-learn, else as pyfunc)."""
    if path.is_dir():
        import mlflow

        if _flavour_of(path) == "sklearn":
            return mlflow.sklearn.load_model(str(path))
        return mlflow.pyfunc.load_model(str(path))
    return _load_pickle(path)


def _is_sklearn(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(model, BaseEstimator)


def _skops_types_of(model: Any) -> list[str] | None:
    """The types of the caller's own estimator that skops does not trust by default (tree
    models hold ``sklearn.tree._tree.Tree``). MLflow saves in the skops format and refuses
    such a model unless its types are named; the caller handed over the object itself."""
    try:
        import skops.io

        return skops.io.get_untrusted_types(data=skops.io.dumps(model)) or None
    except Exception:  # not serializable by skops: MLflow's own error says so
        return None


def _load_pickle(path: Path) -> Any:
    if path.suffix == ".joblib":
        import joblib

        return joblib.load(path)
    if path.suffix not in PICKLE_SUFFIXES:
        raise _not_a_pickle(path)
    with path.open("rb") as handle:
        try:
            return pickle.load(handle)
        except Exception as exc:
            raise ValidationError(f"cannot unpickle {path}: {exc}") from None


def _not_a_pickle(path: Path) -> ValidationError:
    return ValidationError(
        f"{path} is not a .pkl, .pickle or .joblib file, nor an MLflow model directory"
    )


def _copy_tree(source: Path, destination: Path) -> None:
    import shutil

    shutil.copytree(source, destination, dirs_exist_ok=True)


def _saved_format_of(directory: Path) -> str | None:
    """The serialization format an MLflow model directory's sklearn flavour records."""
    from mlflow.models import Model

    flavour = Model.load(str(directory)).flavors.get("sklearn") or {}
    found = flavour.get("serialization_format")
    return str(found) if found else None


def _flavour_of(directory: Path) -> str:
    from mlflow.models import Model

    flavours = Model.load(str(directory)).flavors
    return next((f for f in flavours if f != "python_function"), "python_function")
