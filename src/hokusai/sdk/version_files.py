"""A version's files on local disk, checked against its manifest before anyone uses them.

``load_model`` and ``hokusai models pull`` both come here: the files are downloaded, the
manifest beside them is checked against the digest the version records, and every file
against the manifest. Only then does anything read the files (unpickling a model is
running its code, so a file that is not what was registered must never reach it).

With ``verify="signature"`` the manifest's signature is checked first, against the public
keys the version's workspace trusts (or the ones the caller names): signature ->
manifest -> files (:mod:`hokusai.signing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from hokusai.integrity import (
    TAG_MANIFEST_DIGEST,
    TAG_SIGNER,
    IntegrityError,
    Manifest,
    check_manifest_digest,
    manifest_path,
    signature_path,
    verify_directory,
)
from hokusai.sdk import mlflow_api as api
from hokusai.sdk.artifacts import artifact_root_path, download_bytes, download_directory
from hokusai.sdk.errors import APIError, NotFoundError, ValidationError
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.transport import Transport
from hokusai.signing import PublicKey, public_key, verify_manifest
from hokusai.workspaces.records import DEFAULT_WORKSPACE

# "digest": every file checked against the version's manifest (the default);
# "signature": that, and the manifest signed by a key the workspace trusts;
# "none": the files as the store has them, for versions that record no manifest.
Verify = Literal["digest", "signature", "none"]
VERIFY_CHOICES: tuple[Verify, ...] = ("digest", "signature", "none")
# Trusted keys as a caller may give them: PEM text, or keys already read.
TrustedKeys = Iterable[str | bytes | PublicKey]


def described(version: ModelVersion) -> str:
    return f"version {version.version} of model '{version.name}'"


def download_version(
    transport: Transport,
    version: ModelVersion,
    local: Path,
    *,
    verify: Verify = "digest",
    trusted_keys: TrustedKeys | None = None,
) -> Path:
    """The version's files in ``local`` (a new directory); with ``verify="digest"``,
    :class:`IntegrityError` unless every file is the one registered; with
    ``verify="signature"``, also unless its manifest is signed by a trusted key (the
    workspace's, when ``trusted_keys`` is None)."""
    if verify not in VERIFY_CHOICES:
        raise ValidationError(f"verify must be one of {', '.join(VERIFY_CHOICES)}, not {verify!r}")
    remote = files_path(transport, version)
    manifest = None
    if verify != "none":
        data = manifest_data(transport, version, remote)
        if verify == "signature":
            check_signature(transport, version, remote, data, trusted(transport, trusted_keys))
        manifest = checked_manifest(version, data)
    try:
        received = download_directory(transport, remote, local, digest=manifest is not None)
    except APIError as exc:
        # The gateway's artifact cache refuses a file that is not what the version's
        # manifest records (INVALID_STATE: downloads of files are refused with it for
        # nothing else): the same finding as the check below, so the same error.
        if exc.error_code == "INVALID_STATE":
            raise IntegrityError(described(version), [exc.message]) from None
        raise
    if manifest is not None:
        verify_directory(local, manifest, described(version), received)
    return local


def files_path(transport: Transport, version: ModelVersion) -> str:
    """Where the version's files are, as a path in the registry's artifact store: its
    source's, or for a version made from a logged model (``models:/m-…``, as MLflow 3
    clients register) that model's artifact URI's."""
    uri = version.source
    if uri.startswith("models:/m-"):
        model_id = uri.removeprefix("models:/").strip("/")
        uri = str(api.get_logged_model(transport, model_id)["info"]["artifact_uri"])
    return artifact_root_path(uri)


def manifest_data(transport: Transport, version: ModelVersion, remote: str) -> bytes:
    """The manifest file's bytes, for a version that records one."""
    subject = described(version)
    if version.tags.get(TAG_MANIFEST_DIGEST) is None:
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
        return download_bytes(transport, location)
    except NotFoundError:
        raise IntegrityError(subject, [f"its manifest {location} is missing"]) from None


def checked_manifest(version: ModelVersion, data: bytes) -> Manifest:
    subject = described(version)
    manifest = Manifest.from_json(data, subject=subject)
    check_manifest_digest(manifest, version.tags[TAG_MANIFEST_DIGEST], subject)
    return manifest


def check_signature(
    transport: Transport,
    version: ModelVersion,
    remote: str,
    manifest: bytes,
    trusted: Sequence[PublicKey],
) -> str:
    """The fingerprint of the trusted key that signed the manifest ``manifest``; else
    :class:`~hokusai.signing.SignatureError` (unsigned, invalid, or not trusted)."""
    try:
        bundle: bytes | None = download_bytes(transport, signature_path(remote))
    except NotFoundError:
        bundle = None
    return verify_manifest(
        manifest,
        bundle,
        trusted,
        subject=described(version),
        claimed=version.tags.get(TAG_SIGNER),
    )


def signed_by(
    transport: Transport, version: ModelVersion, trusted_keys: TrustedKeys | None = None
) -> str:
    """The trusted key that signed the version's manifest, the manifest being the one the
    version records (its files are not read); else :class:`IntegrityError`."""
    remote = files_path(transport, version)
    data = manifest_data(transport, version, remote)
    signer = check_signature(transport, version, remote, data, trusted(transport, trusted_keys))
    checked_manifest(version, data)
    return signer


def trusted(transport: Transport, keys: TrustedKeys | None) -> list[PublicKey]:
    """The keys given, else the workspace's."""
    return workspace_trusted_keys(transport) if keys is None else read_trusted_keys(keys)


def read_trusted_keys(keys: TrustedKeys) -> list[PublicKey]:
    """Keys given as PEM text (or already read), each checked."""
    if isinstance(keys, str | bytes):
        raise ValidationError("trusted_keys is a list of PEM public keys, not one key")
    return [key if isinstance(key, PublicKey) else public_key(key) for key in keys]


def workspace_trusted_keys(transport: Transport) -> list[PublicKey]:
    """The public keys the caller's workspace trusts, as its gateway lists them; each key
    is read again here (its fingerprint is computed, not taken from the answer)."""
    identity = transport.json("GET", "/api/v1/whoami")
    workspace = identity.get("workspace") or DEFAULT_WORKSPACE
    answer = transport.json("GET", f"/api/v1/workspaces/{quote(workspace, safe='')}/trusted-keys")
    return [public_key(str(entry["public_key"])) for entry in answer.get("trusted_keys", [])]
