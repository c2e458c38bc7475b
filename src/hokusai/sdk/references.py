"""What the SDK's arguments may name a stored model by, and what each resolves to:
``NAME/VERSION`` and ``NAME@ALIAS`` (with or without ``models:/``) name a version;
``runs:/RUN/PATH`` and ``mlflow-artifacts:/…`` name files a version can be made from."""

from __future__ import annotations

from typing import Any

from hokusai.sdk import mlflow_api as api
from hokusai.sdk.errors import ValidationError
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.transport import Transport

MODEL_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def is_model_uri(model: Any) -> bool:
    """Whether ``model`` names a model already stored in the registry (rather than being
    a model object or a local path to upload)."""
    return isinstance(model, str) and model.startswith(MODEL_URI_SCHEMES)


def resolve_version(transport: Transport, reference: str) -> ModelVersion:
    """The version ``NAME/VERSION``, ``NAME@ALIAS`` or their ``models:/`` URI names."""
    text = reference.removeprefix("models:/")
    if "@" in text:
        name, _, alias = text.rpartition("@")
        return ModelVersion.from_api(api.get_version_by_alias(transport, name, alias))
    name, _, version = text.rpartition("/")
    if not name or not version.isdigit():
        raise ValidationError(
            f"{reference!r} is not NAME/VERSION, models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    return ModelVersion.from_api(api.get_version(transport, name, version))


def resolve_source(transport: Transport, uri: str) -> tuple[str, str | None]:
    """A model URI -> (the artifact source a version is made from, its run id if any)."""
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].partition("/")
        if not run_id or not path:
            raise ValidationError(f"{uri!r} is not runs:/<run_id>/<path>")
        info = api.get_run(transport, run_id)["info"]
        return f"{info['artifact_uri'].rstrip('/')}/{path.strip('/')}", run_id
    if uri.startswith("models:/"):
        version = resolve_version(transport, uri)
        return version.source, version.run_id
    return uri, None
