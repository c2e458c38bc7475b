"""Signed manifests: who vouches for a version's files.

A version's manifest (:mod:`hokusai.integrity`) says what its files are; a signature over
the manifest says who registered them. The signature is made with the OpenSSF
model-signing library's elliptic-curve key signer (no network service, no transparency
log): a Sigstore bundle stored beside the manifest as ``<files>.manifest.sig``. The signer
is named by its public key's fingerprint, ``sha256:<hex>`` of the key's DER
SubjectPublicKeyInfo, which the version's ``hokusai.signer`` tag records.

Verifying goes signature -> manifest -> files: the bundle must verify against one of the
trusted public keys (a workspace keeps its list), the manifest's digest must be the one
the version records, and every file must match the manifest. The tag only names who
claims to have signed; the signature decides.

model-signing (and ``cryptography``) are imported only when a key is read or a signature
made or checked: the SDK's base install does without them, and says which extra to
install when they are needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from hokusai.integrity import IntegrityError
from hokusai.sdk.errors import HokusaiError

EXTRA = "hokusai-ml-platform[signing]"
# The file names the manifest and its bundle get in a scratch directory: model-signing
# signs one file, named in the bundle as ".", so the name is not part of what is signed.
_MANIFEST_FILE = "manifest.json"
_BUNDLE_FILE = "manifest.sig"
# The curves model-signing's key signer accepts.
CURVES = ("secp256r1", "secp384r1", "secp521r1")
MAX_PUBLIC_KEY = 4096

# Why a signature check failed: no signature at all, one that does not verify, or one
# made by a key the workspace does not trust.
Problem = Literal["unsigned", "invalid", "untrusted"]


class SigningUnavailableError(HokusaiError):
    """model-signing is not installed (the ``signing`` extra)."""


class KeyFormatError(HokusaiError, ValueError):
    """A key that is not a PEM elliptic-curve key of a curve model-signing signs with."""


class SignatureError(IntegrityError):
    """A version's signature is missing, does not verify, or was made by a key the
    workspace does not trust; ``problem`` says which, ``signer`` names the key that
    claims to have signed (None when unknown)."""

    def __init__(
        self, subject: str, problem: Problem, why: str, *, signer: str | None = None
    ) -> None:
        self.problem = problem
        self.signer = signer
        super().__init__(subject, [why])


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key: its fingerprint and its PEM text."""

    fingerprint: str
    pem: str

    @property
    def bundle_hint(self) -> str:
        """What model-signing's bundle names its key by: SHA-256 of the PEM text."""
        return hashlib.sha256(self.pem.encode()).hexdigest()


@dataclass(frozen=True)
class Signature:
    """A signature bundle over one manifest, and the fingerprint of the key that made it."""

    bundle: bytes
    signer: str


def model_signing() -> ModuleType:
    """The model-signing package, or :class:`SigningUnavailableError` naming the extra."""
    try:
        import model_signing.signing
        import model_signing.verifying
    except ImportError as exc:
        raise SigningUnavailableError(
            f"signing and checking signatures needs the OpenSSF model-signing library: "
            f"pip install '{EXTRA}' ({exc})"
        ) from None
    return model_signing


def _serialization() -> Any:
    model_signing()  # cryptography comes with it: the same error names the extra
    from cryptography.hazmat.primitives import serialization

    return serialization


def public_key(pem: str | bytes) -> PublicKey:
    """The public key in ``pem`` (a private key is refused: it is never sent anywhere);
    :class:`KeyFormatError` if it is not an elliptic-curve key of a curve model-signing
    accepts."""
    serialization = _serialization()
    from cryptography.hazmat.primitives.asymmetric import ec

    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_PUBLIC_KEY:
        raise KeyFormatError(f"a public key is at most {MAX_PUBLIC_KEY} bytes of PEM")
    if b"PRIVATE KEY" in data:
        raise KeyFormatError(
            "this is a private key: give the public key (openssl ec -in KEY -pubout)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not a PEM public key ({exc})") from None
    return _described(key, ec)


def _described(key: Any, ec: Any) -> PublicKey:
    serialization = _serialization()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise KeyFormatError(
            "a signing key must be an elliptic-curve key on P-256, P-384 or P-521 "
            "(openssl ecparam -name prime256v1 -genkey -noout -out key.pem)"
        )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return PublicKey("sha256:" + hashlib.sha256(der).hexdigest(), pem)


def private_key_public_half(private_pem: bytes, password: str | None = None) -> PublicKey:
    """The public key of a PEM private key (to name the signer)."""
    serialization = _serialization()
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(
            private_pem, password.encode() if password is not None else None
        )
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not a usable PEM private key ({exc})") from None
    return _described(key.public_key(), ec)


def read_private_key(key: str | Path | bytes) -> bytes:
    """A private key given as PEM bytes or as the path of a PEM file."""
    if isinstance(key, bytes):
        return key
    path = Path(key)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFormatError(f"cannot read the signing key {path}: {exc.strerror}") from None


def sign_manifest(manifest: bytes, private_key: bytes, *, password: str | None = None) -> Signature:
    """Sign the manifest ``manifest`` (its exact bytes) with ``private_key`` (PEM)."""
    signer = private_key_public_half(private_key, password)
    ms = model_signing()
    with tempfile.TemporaryDirectory(prefix="hokusai-sign-") as scratch:
        folder = Path(scratch)
        key_file = folder / "key.pem"
        # model-signing reads the key from a file: one only this user can read, removed
        # with the directory when signing ends.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private_key)
        (folder / _MANIFEST_FILE).write_bytes(manifest)
        config = ms.signing.Config().use_elliptic_key_signer(
            private_key=key_file, password=password
        )
        config.sign(folder / _MANIFEST_FILE, folder / _BUNDLE_FILE)
        return Signature((folder / _BUNDLE_FILE).read_bytes(), signer.fingerprint)


def verify_manifest(
    manifest: bytes,
    bundle: bytes | None,
    trusted: Iterable[PublicKey],
    *,
    subject: str,
    claimed: str | None = None,
) -> str:
    """The fingerprint of the trusted key whose signature ``bundle`` is over ``manifest``;
    else :class:`SignatureError`. ``bundle`` None: the version has no signature.
    ``claimed``: the signer the version's tag names, for the message."""
    if bundle is None:
        raise SignatureError(
            subject,
            "unsigned",
            "it is not signed: sign it with a trusted key (ModelRegistry.sign_version, or "
            "signing_key= when registering)",
        )
    try:
        hint = json.loads(bundle)["verificationMaterial"]["publicKey"].get("hint")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SignatureError(
            subject, "invalid", "its signature file is not a signature bundle", signer=claimed
        ) from None
    keys = list(trusted)
    candidates = [k for k in keys if not hint or k.bundle_hint == hint]
    if not candidates:
        who = claimed or "a key"
        raise SignatureError(
            subject,
            "untrusted",
            f"it is signed by {who}, which is not among the {len(keys)} key(s) the "
            "workspace trusts: an admin of the workspace can trust it "
            "(hokusai workspaces trust-key), or sign the version with a trusted key",
            signer=claimed,
        )
    ms = model_signing()
    with tempfile.TemporaryDirectory(prefix="hokusai-verify-") as scratch:
        folder = Path(scratch)
        (folder / _MANIFEST_FILE).write_bytes(manifest)
        (folder / _BUNDLE_FILE).write_bytes(bundle)
        for index, key in enumerate(candidates):
            key_file = folder / f"trusted-{index}.pem"
            key_file.write_text(key.pem)
            config = ms.verifying.Config().use_elliptic_key_verifier(public_key=key_file)
            try:
                config.verify(folder / _MANIFEST_FILE, folder / _BUNDLE_FILE)
            except Exception:  # model-signing raises ValueError and the key's own errors
                continue
            return key.fingerprint
    raise SignatureError(
        subject,
        "invalid",
        "its signature does not verify over its manifest: the manifest or the signature "
        "was changed after signing",
        signer=claimed,
    )
