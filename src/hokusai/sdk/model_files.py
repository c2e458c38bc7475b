"""Turning what the caller hands over into an MLflow model directory on local disk."""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import pickle
from pathlib import Path
from typing import Any

from hokusai.sdk.errors import ValidationError
from hokusai.sdk.requirements import model_requirements

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
TAG_SERIALIZATION_FORMAT = "hokusai_serialization_format"

# How a scikit-learn estimator is saved. ``skops`` is the safe default where the installed
# MLflow can save it (3.9 and later, with skops installed): loading it runs no code from
# the file. But only such an MLflow can load it (MLflow 2.x: "Unrecognized serialization
# format: skops"); ``cloudpickle`` and ``pickle`` load everywhere, and loading them runs
# whatever code the file holds — only for files you trust. Where skops cannot be saved,
# the default is ``cloudpickle`` (:func:`default_serialization_format`).
SKOPS = "skops"
FALLBACK_SERIALIZATION_FORMAT = "cloudpickle"
SERIALIZATION_FORMATS = (SKOPS, "cloudpickle", "pickle")
# The first MLflow whose sklearn flavour saves skops with the trusted types the SDK names.
SKOPS_SINCE_MLFLOW = "3.9"

log = logging.getLogger("hokusai.sdk")


@functools.cache
def why_not_skops() -> str | None:
    """Why this environment cannot save the skops format, or None when it can.

    Decided from the installed MLflow itself, not from its version number: its sklearn
    flavour must list ``skops`` and take ``skops_trusted_types`` (MLflow 3.9 and later),
    and the ``skops`` package must be importable.
    """
    import mlflow
    import mlflow.sklearn

    formats = getattr(mlflow.sklearn, "SUPPORTED_SERIALIZATION_FORMATS", ())
    parameters = inspect.signature(mlflow.sklearn.save_model).parameters
    if SKOPS not in formats or "skops_trusted_types" not in parameters:
        return (
            f"the installed MLflow {mlflow.__version__} cannot save the skops format (MLflow "
            f"{SKOPS_SINCE_MLFLOW} and later can: pip install 'mlflow-skinny>="
            f"{SKOPS_SINCE_MLFLOW}')"
        )
    if importlib.util.find_spec("skops") is None:
        return "the skops package is not installed (pip install 'hokusai-ml-platform[sklearn]')"
    return None


def default_serialization_format() -> str:
    """``skops`` where the installed MLflow can save it (:func:`why_not_skops`), else
    ``cloudpickle`` (said once in the ``hokusai.sdk`` log)."""
    reason = why_not_skops()
    if reason is None:
        return SKOPS
    _log_fallback(reason)
    return FALLBACK_SERIALIZATION_FORMAT


@functools.cache
def _log_fallback(reason: str) -> None:
    log.warning(
        "saving scikit-learn models as %s, not skops: %s. Loading a %s file runs the code "
        "it holds; load only models from people you trust",
        FALLBACK_SERIALIZATION_FORMAT,
        reason,
        FALLBACK_SERIALIZATION_FORMAT,
    )


def _chosen_format(requested: str | None) -> str:
    """The format a scikit-learn estimator will be saved in; an explicit ``skops`` that
    this environment cannot save is refused here, before anything is sent."""
    if requested is None:
        return default_serialization_format()
    if requested == SKOPS:
        reason = why_not_skops()
        if reason is not None:
            raise ValidationError(
                f"serialization_format='skops' cannot be saved here: {reason}; or choose "
                f"serialization_format='{FALLBACK_SERIALIZATION_FORMAT}' (or 'pickle'), "
                "which every MLflow loads and which runs code when loaded"
            )
    return requested


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
        return _chosen_format(requested)
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
    A scikit-learn estimator is saved in ``serialization_format`` (default: ``skops``
    where the installed MLflow can save it, else ``cloudpickle``;
    :func:`default_serialization_format`).
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
        chosen = _chosen_format(serialization_format)
        # Only an MLflow that saves skops takes its trusted types (MLflow 2.x has neither).
        skops = {"skops_trusted_types": _skops_types_of(model)} if chosen == SKOPS else {}
        mlflow.sklearn.save_model(
            model,
            str(destination),
            serialization_format=chosen,
            # Named by the SDK, not inferred by MLflow (sdk/requirements.py says why).
            pip_requirements=model_requirements(model, "sklearn", chosen),
            **skops,
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
