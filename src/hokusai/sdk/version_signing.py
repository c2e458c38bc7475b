"""Signing a version's manifest: at registration (the SDK's upload step) or later, for a
version registered unsigned.

The signature bundle goes beside the manifest (``<files>.manifest.sig``) and the signer's
fingerprint into the version's ``hokusai.signer`` tag. For a READY version the gateway
lets the signature file be written once and never again (``gateway/frozen_artifacts.py``):
a version is signed by one key, for good.
"""

from __future__ import annotations

from pathlib import Path

from hokusai.integrity import TAG_SIGNER, signature_path
from hokusai.sdk import mlflow_api as api
from hokusai.sdk.artifacts import download_bytes, upload_bytes
from hokusai.sdk.errors import APIError, NotFoundError
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.transport import Transport
from hokusai.sdk.version_files import checked_manifest, described, files_path, manifest_data
from hokusai.signing import (
    Signature,
    SignatureError,
    private_key_public_half,
    read_private_key,
    sign_manifest,
    verify_manifest,
)


def signing_key(key: str | Path | bytes, password: str | None = None) -> bytes:
    """A private key (PEM bytes, or the path of a PEM file), read and checked now: a key
    that cannot sign fails before anything is uploaded."""
    pem = read_private_key(key)
    private_key_public_half(pem, password)
    return pem


def sign_version(
    transport: Transport,
    version: ModelVersion,
    private_key: bytes,
    *,
    password: str | None = None,
) -> str:
    """Sign ``version``'s manifest with ``private_key``; the signer's fingerprint.

    The manifest is checked against the version's digest first: only what was registered
    is signed. A version signed already is refused (the gateway keeps its signature), but
    one whose signature this key made (an earlier attempt whose answer was lost) is
    completed."""
    remote = files_path(transport, version)
    data = manifest_data(transport, version, remote)
    checked_manifest(version, data)
    signature = sign_manifest(data, private_key, password=password)
    location = signature_path(remote)
    try:
        upload_bytes(transport, signature.bundle, location)
    except APIError as refused:
        if not _signed_by(transport, version, data, location, private_key, password):
            raise APIError(
                f"{described(version)} is signed already, by another key or signature: a "
                f"version's signature is written once ({refused.message})",
                status_code=refused.status_code,
                error_code=refused.error_code,
                request_id=refused.request_id,
                body=refused.body,
            ) from None
    api.set_version_tag(transport, version.name, version.version, TAG_SIGNER, signature.signer)
    return signature.signer


def upload_signature(transport: Transport, signature: Signature, remote: str) -> None:
    """Store ``signature`` beside the manifest of the model files at ``remote``."""
    upload_bytes(transport, signature.bundle, signature_path(remote))


def _signed_by(
    transport: Transport,
    version: ModelVersion,
    manifest: bytes,
    location: str,
    private_key: bytes,
    password: str | None,
) -> bool:
    """Whether the stored signature is this key's, over this manifest."""
    try:
        stored = download_bytes(transport, location)
    except NotFoundError:
        return False
    own = private_key_public_half(private_key, password)
    try:
        verify_manifest(manifest, stored, [own], subject=described(version))
    except SignatureError:
        return False
    return True
