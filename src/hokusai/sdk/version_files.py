"""A version's files on local disk, checked against its manifest before anyone uses them.

``load_model`` and ``hokusai models pull`` both come here: the files are downloaded, the
manifest beside them is checked against the digest the version records, and every file
against the manifest. Only then does anything read the files (unpickling a model is
running its code, so a file that is not what was registered must never reach it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hokusai.integrity import (
    TAG_MANIFEST_DIGEST,
    IntegrityError,
    Manifest,
    check_manifest_digest,
    manifest_path,
    verify_directory,
)
from hokusai.sdk import mlflow_api as api
from hokusai.sdk.artifacts import artifact_root_path, download_bytes, download_directory
from hokusai.sdk.errors import APIError, NotFoundError, ValidationError
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.transport import Transport

# "digest": every file checked against the version's manifest (the default);
# "none": the files as the store has them, for versions that record no manifest.
Verify = Literal["digest", "none"]
VERIFY_CHOICES: tuple[Verify, ...] = ("digest", "none")


def described(version: ModelVersion) -> str:
    return f"version {version.version} of model '{version.name}'"


def download_version(
    transport: Transport, version: ModelVersion, local: Path, *, verify: Verify = "digest"
) -> Path:
    """The version's files in ``local`` (a new directory); with ``verify="digest"``,
    :class:`IntegrityError` unless every file is the one registered."""
    if verify not in VERIFY_CHOICES:
        raise ValidationError(f"verify must be one of {', '.join(VERIFY_CHOICES)}, not {verify!r}")
    remote = artifact_root_path(files_uri(transport, version))
    manifest = version_manifest(transport, version, remote) if verify == "digest" else None
    try:
        download_directory(transport, remote, local)
    except APIError as exc:
        # The gateway's artifact cache refuses a file that is not what the version's
        # manifest records (INVALID_STATE: downloads of files are refused with it for
        # nothing else): the same finding as the check below, so the same error.
        if exc.error_code == "INVALID_STATE":
            raise IntegrityError(described(version), [exc.message]) from None
        raise
    if manifest is not None:
        verify_directory(local, manifest, described(version))
    return local


def files_uri(transport: Transport, version: ModelVersion) -> str:
    """Where the version's files are: its source, or for a version made from a logged
    model (``models:/m-…``, as MLflow 3 clients register) that model's artifact URI."""
    if version.source.startswith("models:/m-"):
        model_id = version.source.removeprefix("models:/").strip("/")
        return str(api.get_logged_model(transport, model_id)["info"]["artifact_uri"])
    return version.source


def version_manifest(transport: Transport, version: ModelVersion, remote: str) -> Manifest:
    """The manifest the version records, checked against the digest in its tag."""
    subject = described(version)
    recorded = version.tags.get(TAG_MANIFEST_DIGEST)
    if recorded is None:
        raise IntegrityError(
            subject,
            [
                "it records no manifest (made before manifests were recorded, or by a client "
                "that records none), so its files cannot be checked; load it with "
                "verify='none' only if you trust them"
            ],
        )
    location = manifest_path(remote)
    try:
        data = download_bytes(transport, location)
    except NotFoundError:
        raise IntegrityError(subject, [f"its manifest {location} is missing"]) from None
    manifest = Manifest.from_json(data, subject=subject)
    check_manifest_digest(manifest, recorded, subject)
    return manifest
