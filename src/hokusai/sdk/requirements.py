"""The pip requirements recorded with a model the SDK saves.

MLflow infers them by loading the model in a subprocess and watching which modules it
imports: about 3.5 s per save, and the answer lists whatever the calling process had
imported (a test runner, a CLI library). The SDK knows what it saved, so it names the
packages itself: the flavour's own, the serialization format's, and the distributions
that the model's classes come from, each at its installed version.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Iterable, Iterator
from typing import Any

# What loading each flavour and format needs besides the model's own classes. Every
# model is loaded through ``mlflow.pyfunc``, which imports pandas: mlflow-skinny (what the
# SDK's base install brings) leaves pandas out, so it is named here.
_FLAVOUR_MODULES = {
    # scikit-learn models hold numpy and scipy objects: their versions matter on load too.
    "sklearn": ("mlflow", "sklearn", "numpy", "scipy", "pandas"),
    "python_function": ("mlflow", "cloudpickle", "pandas"),
}
_FORMAT_MODULES = {"skops": ("skops",), "cloudpickle": ("cloudpickle",), "pickle": ()}


def model_requirements(model: Any, flavour: str, serialization_format: str | None) -> list[str]:
    """``["mlflow==3.17.2", "scikit-learn==1.7.2", …]`` for ``model`` saved as ``flavour``.

    Every distribution is pinned to the version installed here, where the model was
    fitted; distributions that only the standard library or ``__main__`` provide are left
    out (a class defined in a script cannot be installed anyway).
    """
    modules = [*_FLAVOUR_MODULES.get(flavour, ("mlflow",))]
    modules += _FORMAT_MODULES.get(serialization_format or "", ())
    modules += sorted({_top_level(cls.__module__) for cls in _classes_in(model)})
    pins: dict[str, str] = {}
    for module in modules:
        for distribution in _distributions_of(module):
            pins.setdefault(distribution, importlib.metadata.version(distribution))
    return [f"{name}=={version}" for name, version in pins.items()]


def _top_level(module: str) -> str:
    return module.partition(".")[0]


def _distributions_of(module: str) -> list[str]:
    if module in sys.stdlib_module_names or module in ("__main__", "builtins"):
        return []
    try:  # most distributions are named as their module (numpy, scipy, mlflow, skops)
        return [importlib.metadata.distribution(module).metadata["Name"]]
    except importlib.metadata.PackageNotFoundError:
        pass
    # Others are not (sklearn: scikit-learn): their declared top-level modules say, and
    # only then the slow scan of every installed file list.
    return _declared_top_levels().get(module) or _all_top_levels().get(module, [])


@functools.cache
def _declared_top_levels() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for distribution in importlib.metadata.distributions():
        for line in (distribution.read_text("top_level.txt") or "").split():
            found.setdefault(line, []).append(distribution.metadata["Name"])
    return found


@functools.cache
def _all_top_levels() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _classes_in(model: Any, depth: int = 0) -> Iterator[type]:
    """The classes of ``model`` and of the estimators nested in it (pipelines, ensembles)."""
    yield type(model)
    if depth > 4:
        return
    for value in _nested_values(model):
        if hasattr(value, "__dict__") and not isinstance(value, type):
            yield from _classes_in(value, depth + 1)


def _nested_values(model: Any) -> Iterable[Any]:
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            params = get_params(deep=False)
        except Exception:  # an estimator whose params cannot be read: its own class only
            return []
        values: list[Any] = []
        for value in params.values():
            if isinstance(value, list | tuple):  # Pipeline.steps, ColumnTransformer, …
                for item in value:
                    values.extend(item if isinstance(item, tuple) else (item,))
            else:
                values.append(value)
        return values
    return []
