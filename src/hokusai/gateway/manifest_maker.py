"""A manifest for each version a client registered without one, made by the gateway.

The SDK records a manifest with every version it registers (``hokusai.integrity``). A
stock MLflow client records none, so when its ``model-versions/create`` succeeds the
gateway makes one before the client has the answer: it lists the version's files in
MLflow and takes each file's digest from what it recorded as the upload streamed
through it (``gateway/upload_digests.py``). It then stores the manifest beside the
files and tags the version with its digest, exactly as the SDK does, so ``load_model``
and ``hokusai models pull`` check such a version like any other.

No manifest is made when the gateway cannot vouch for every file: one it never saw
uploaded (written straight into the artifact store, or by a multipart upload), or one
whose size in the store is not the size that passed. The version is then left as the
client made it, and a warning says why: a manifest that names only some files, or
sizes the gateway did not see, would make a changed file look registered.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from sqlalchemy import Engine

from hokusai.gateway import upload_digests
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.frozen_artifacts import artifact_path
from hokusai.gateway.mlflow_probe import MlflowProbe
from hokusai.gateway.version_locations import files_location
from hokusai.integrity import TAG_MANIFEST_DIGEST, FileDigest, Manifest, manifest_path
from hokusai.webhooks.events import tag_map
from hokusai.workspaces.records import WORKSPACE_HEADER

log = logging.getLogger("hokusai.gateway.manifest_maker")

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
SET_TAG = "/api/2.0/mlflow/model-versions/set-tag"
# A model directory holds a few files; a listing beyond these is not a model's, and the
# gateway does not walk it.
MAX_FILES = 10_000
TIMEOUT = 30.0


class Unvouched(Exception):
    """The gateway cannot vouch for every file of the version: no manifest is made."""


class ManifestMaker:
    """Makes manifests through ``client`` (the gateway's pool for its own MLflow calls)."""

    def __init__(
        self, engine: Engine, client: httpx.AsyncClient, upstream_url: str, probe: MlflowProbe
    ) -> None:
        self._engine = engine
        self._probe = probe
        self._client = client
        self._upstream = upstream_url.rstrip("/")

    async def make_for(self, workspace: str, version: dict[str, Any]) -> str | None:
        """The digest of a manifest made now for the version MLflow just created in
        ``workspace``; None when its client recorded one itself, or when none can be made
        (a warning says why)."""
        if TAG_MANIFEST_DIGEST in tag_map(version):
            return None
        described = f"version {version.get('version')} of model '{version.get('name')}'"
        try:
            location = await files_location(self._probe, workspace, version)
            files = artifact_path(location, workspace) if location else None
            if location is None or not files:
                raise Unvouched("its files are not in this registry's store")
            listed = await self._list_files(workspace, location)
            seen = await anyio.to_thread.run_sync(
                upload_digests.recorded_under, self._engine, workspace, files
            )
            manifest = _vouched_manifest(listed, seen)
            await self._store(workspace, location, manifest)
            await self._tag(workspace, version, manifest.digest)
        except Unvouched as exc:
            log.warning("%s has no manifest: %s", described, exc)
            return None
        except (GatewayError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            # The version exists either way; it is left as its client made it.
            log.warning("%s has no manifest: MLflow failed (%s)", described, exc)
            return None
        return manifest.digest

    async def _list_files(self, workspace: str, location: str) -> dict[str, int]:
        """Every file under ``location`` in MLflow's store: relative path -> size."""
        found: dict[str, int] = {}
        pending = [""]
        while pending:
            relative = pending.pop()
            entries = await self._probe.listing(
                workspace,
                f"{location}/{relative}".rstrip("/"),
                about="which files a new version holds",
            )
            for entry in entries:
                name = f"{relative}/{entry['path'].rsplit('/', 1)[-1]}".lstrip("/")
                if entry.get("is_dir"):
                    pending.append(name)
                else:
                    # MLflow leaves a size of 0 out of its answer (protobuf's default).
                    found[name] = int(entry.get("file_size") or 0)
                if len(found) + len(pending) > MAX_FILES:
                    raise Unvouched(f"it holds more than {MAX_FILES} files")
        return found

    async def _store(self, workspace: str, location: str, manifest: Manifest) -> None:
        answer = await self._client.put(
            self._upstream + ARTIFACTS + "/" + quote(manifest_path(location)),
            content=manifest.to_json(),
            headers={WORKSPACE_HEADER: workspace, "Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
        answer.raise_for_status()

    async def _tag(self, workspace: str, version: dict[str, Any], digest: str) -> None:
        answer = await self._client.post(
            self._upstream + SET_TAG,
            json={
                "name": version["name"],
                "version": str(version["version"]),
                "key": TAG_MANIFEST_DIGEST,
                "value": digest,
            },
            headers={WORKSPACE_HEADER: workspace},
            timeout=TIMEOUT,
        )
        answer.raise_for_status()


def _vouched_manifest(listed: dict[str, int], seen: dict[str, FileDigest]) -> Manifest:
    """The manifest of the listed files, each as it passed through the gateway."""
    if not listed:
        raise Unvouched("MLflow lists no files at its location")
    files: dict[str, FileDigest] = {}
    for path, size in sorted(listed.items()):
        digest = seen.get(path)
        if digest is None:
            raise Unvouched(f"{path} was not uploaded through this gateway")
        if digest.size != size:
            raise Unvouched(
                f"{path} is {size} bytes in the store, {digest.size} bytes passed through "
                "the gateway"
            )
        files[path] = digest
    return Manifest(files)
