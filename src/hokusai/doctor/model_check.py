"""``hokusai doctor --model NAME@ALIAS``: is this version what was registered, who
signed it, and how does it load? The files are downloaded to a scratch directory and
checked against the version's manifest, the manifest's signature against the keys the
workspace trusts; nothing is deserialized."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hokusai.doctor.report import HopFailed
from hokusai.integrity import TAG_MANIFEST_DIGEST, TAG_SIGNER, IntegrityError
from hokusai.sdk.config import ClientConfig
from hokusai.sdk.errors import HokusaiError
from hokusai.sdk.model_files import TAG_SERIALIZATION_FORMAT
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.safe_formats import pickle_reasons
from hokusai.signing import SignatureError, SigningUnavailableError


def check_version(config: ClientConfig, reference: str, timeout: float) -> str:
    """What the version is (digest, files, format); :class:`HopFailed` when its files do
    not match its manifest or it cannot be read."""
    with (
        ModelRegistry(
            api_key=config.api_key,
            api_url=config.api_url,
            ca_bundle=config.ca_bundle,
            timeout=timeout,
            max_retry_time=timeout,
        ) as registry,
        tempfile.TemporaryDirectory(prefix="hokusai-doctor-") as scratch,
    ):
        local = Path(scratch) / "model"
        try:
            version = registry.download_model(reference, local)
        except IntegrityError as failed:
            raise HopFailed(
                str(failed),
                "Do not deploy this version: its files are not the ones registered. Ask the "
                "registry's operators who could write to the artifact store, and register "
                "the model again from its source.",
            ) from None
        except HokusaiError as failed:
            raise HopFailed(
                str(failed),
                "Check the reference (NAME@ALIAS or NAME/VERSION) and the key's access.",
            ) from None
        files = [p for p in local.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        reasons = pickle_reasons(local)
        stored = version.tags.get(TAG_SERIALIZATION_FORMAT)
        loads = (
            "loads with pickle (" + "; ".join(reasons) + "): load_model needs allow_pickle=True"
            if reasons
            else "loads without pickle"
        )
        signed = _signer(registry, version)
    return (
        f"{version.name}/{version.version}: {len(files)} files, {size} bytes, each matching "
        f"manifest {version.tags[TAG_MANIFEST_DIGEST]}; {signed}; format "
        f"{stored or 'not recorded'}, {loads}"
    )


def _signer(registry: ModelRegistry, version: ModelVersion) -> str:
    """Who signed the version, and whether its workspace trusts the signature."""
    claimed = version.tags.get(TAG_SIGNER)
    if claimed is None:
        return "not signed"
    try:
        registry.verify_signature(version)
    except SignatureError as problem:
        if problem.problem == "untrusted":
            return f"signed by {claimed}, a key the workspace does not trust"
        return f"signed by {claimed}, but {'; '.join(problem.problems)}"
    except SigningUnavailableError:
        return f"signed by {claimed} (not checked: install the signing extra to check it)"
    return f"signed by {claimed}, a key the workspace trusts"
