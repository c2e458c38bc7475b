"""What the SDK's arguments may name a stored model by, and what each resolves to:
``NAME/VERSION`` and ``NAME@ALIAS`` (with or without ``models:/``) name a version;
``runs:/RUN/PATH`` and ``mlflow-artifacts:/…`` name files a version can be made from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hokusai.integrity import TAG_MANIFEST_DIGEST, TAG_SIGNER
from hokusai.sdk import mlflow_api as api
from hokusai.sdk.errors import ValidationError
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.transport import Transport

MODEL_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
# Where in its run's artifacts a registration uploads a model.
UPLOADED_MODEL_PATH = "model"


def is_model_uri(model: Any) -> bool:
    """Whether ``model`` names a model already stored in the registry (rather than being
    a model object or a local path to upload)."""
    return isinstance(model, str) and model.startswith(MODEL_URI_SCHEMES)


def resolve_version(transport: Transport, reference: str | ModelVersion) -> ModelVersion:
    """The version ``NAME/VERSION``, ``NAME@ALIAS`` or their ``models:/`` URI names (a
    version already read is its own answer)."""
    if isinstance(reference, ModelVersion):
        return reference
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


@dataclass(frozen=True)
class StoredModel:
    """The files a version can be made from: where they are, the run that made them (if
    known) and, when a version already records them, the digest of their manifest and
    the key that signed it (the signature lies beside the manifest, so it is the new
    version's too)."""

    source: str
    run_id: str | None
    manifest_digest: str | None = None
    signer: str | None = None


def resolve_source(transport: Transport, uri: str) -> StoredModel:
    """What a model URI names."""
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].partition("/")
        if not run_id or not path:
            raise ValidationError(f"{uri!r} is not runs:/<run_id>/<path>")
        path = path.strip("/")
        run = api.get_run(transport, run_id)
        source = f"{run['info']['artifact_uri'].rstrip('/')}/{path}"
        # A registration's run records the manifest of the model it uploaded (at "model").
        if path != UPLOADED_MODEL_PATH:
            return StoredModel(source, run_id)
        uploaded = api.tag_dict(run.get("data", {}).get("tags"))
        return StoredModel(
            source, run_id, uploaded.get(TAG_MANIFEST_DIGEST), uploaded.get(TAG_SIGNER)
        )
    if uri.startswith("models:/"):
        # Another version of the same files: their manifest is the one it records.
        version = resolve_version(transport, uri)
        return StoredModel(
            version.source,
            version.run_id,
            version.tags.get(TAG_MANIFEST_DIGEST),
            version.tags.get(TAG_SIGNER),
        )
    return StoredModel(uri, None)
