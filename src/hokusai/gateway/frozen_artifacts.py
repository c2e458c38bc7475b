"""Which artifact files belong to a READY model version, and so never change.

A model version's files are its content: once the version is READY, a deployment that
loaded it and one that loads it tomorrow must get the same bytes. MLflow itself lets any
write key overwrite or delete them (``PUT``/``DELETE`` on ``mlflow-artifacts``). The
gateway refuses that, and because they cannot change through it, it may keep them in its
artifact cache (``gateway/artifact_cache.py``).

A version's files are found from the path of a request, by asking MLflow in the caller's
workspace which versions were made from the run or logged model the path lies in:

- ``<experiment>/<run_id>/artifacts/…``: versions whose ``run_id`` is that run;
- ``<experiment>/models/<model_id>/artifacts/…``: versions whose source is
  ``models:/<model_id>`` (as MLflow 3 clients register: their files are where the logged
  model's artifact URI says, ``gateway/version_locations.py``).

The manifest beside a version's files (``<files>.manifest.json``, ``hokusai.integrity``)
belongs to the version as well: it says what the files are. Its digest, the version's
``hokusai.manifest_digest`` tag, comes with the version (MLflow's search answer has its
tags), so the artifact cache can check what it keeps without asking MLflow again. So does
the manifest's signature (``<files>.manifest.sig``, ``hokusai.signing``) belong to the
version, with one difference: a version registered unsigned may be signed later, so its
signature file may be written once, by a plain upload, while it does not exist; once
written it never changes or goes, like the rest. (Two signings racing for the same
unsigned version may both be let through; the later upload wins, and each is a complete
signature of the same manifest.)

A version whose files lie elsewhere (a source this gateway does not serve) is never
frozen here, so nothing of it is cached: it is proxied as before.

Reads remember an answer for a few seconds (a fleet resolving one version asks MLflow
once); a write is always decided on MLflow's current answer.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.mlflow_probe import MlflowProbe
from hokusai.gateway.version_locations import files_location, proxied_location
from hokusai.integrity import TAG_MANIFEST_DIGEST, manifest_path, signature_path
from hokusai.webhooks.events import tag_map

ARTIFACTS = re.compile(r"/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/(?P<path>.+)")
LISTING = re.compile(r"/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/?")
MULTIPART = re.compile(r"/(?:ajax-)?api/2\.0/mlflow-artifacts/mpu/(?:create|complete)/(?P<path>.+)")
UI_UPLOAD = re.compile(r"/ajax-api/2\.0/mlflow/upload-artifact")
# Run and logged model ids as MLflow makes them; anything else is no version's.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
READY = "READY"
# How long a read trusts MLflow's answer about a path: the time a deleted version's files
# may still be served from the cache.
REMEMBER_SECONDS = 5.0
REMEMBER_MAX = 10_000
_SEARCH_PAGE = "1000"


@dataclass(frozen=True)
class FrozenVersion:
    """A READY model version and where its files lie (a path relative to the workspace's
    artifact root, as ``artifact_path`` gives it); ``manifest_digest`` is its
    ``hokusai.manifest_digest`` tag, None for a version made before manifests."""

    name: str
    version: str
    created_ms: str
    files: str
    manifest_digest: str | None = None

    def covers(self, path: str) -> bool:
        # The manifest beside the files is part of the version too: it says what they
        # are; and so is its signature, once written.
        return (
            _within(path, self.files) or path == manifest_path(self.files) or path == self.signature
        )

    @property
    def signature(self) -> str:
        """Where the signature of the version's manifest lies: written at most once."""
        return signature_path(self.files)

    def described(self) -> str:
        return f"version {self.version} of model '{self.name}'"


def artifact_path(raw: str, workspace: str) -> str | None:
    """The artifact path of a request path's tail, without the workspace prefix MLflow
    may carry (``workspaces/<name>/``; the workspace's root itself is ``""``); None for a
    path into another workspace, or one that is not a clean relative path (MLflow
    refuses those itself)."""
    path = unquote(raw).strip("/")
    segments = path.split("/") if path else []
    if segments and segments[0] == "workspaces":
        if len(segments) < 2 or segments[1] != workspace:
            return None
        segments = segments[2:]
    if any(part in ("", ".", "..") or "\\" in part for part in segments):
        return None
    return "/".join(segments)


class FrozenArtifacts:
    """The decisions of one gateway; ``probe`` asks MLflow."""

    def __init__(self, probe: MlflowProbe) -> None:
        self._probe = probe
        # (workspace, owner) -> (until, versions): MLflow's recent answers, for reads only.
        self._remembered: OrderedDict[tuple[str, str], tuple[float, list[FrozenVersion]]] = (
            OrderedDict()
        )

    async def version_of(self, workspace: str, path: str) -> FrozenVersion | None:
        """The READY version whose files include the file ``path``, or None."""
        owner = _owner(path)
        if owner is None:
            return None
        now = time.monotonic()
        remembered = self._remembered.get((workspace, owner))
        if remembered is not None and remembered[0] > now:
            versions = remembered[1]
        else:
            versions = await self._versions(workspace, owner)
            self._remembered[(workspace, owner)] = (now + REMEMBER_SECONDS, versions)
            self._remembered.move_to_end((workspace, owner))
            while len(self._remembered) > REMEMBER_MAX:
                self._remembered.popitem(last=False)
        return next((version for version in versions if version.covers(path)), None)

    @staticmethod
    def requested_path(workspace: str, mlflow_path: str, query_string: bytes) -> str | None:
        """The artifact path an artifact request names (see :func:`artifact_path`); None
        for a request that names none. Refuses one naming files outside the workspace's
        artifacts: MLflow refuses ``workspaces/<other>/…`` itself, but serves the default
        workspace ``workspaces`` alone as a legacy path, the directory of every other
        workspace's files, to list or to delete."""
        if match := ARTIFACTS.fullmatch(mlflow_path) or MULTIPART.fullmatch(mlflow_path):
            named = match["path"]
        elif LISTING.fullmatch(mlflow_path):
            named = dict(parse_qsl(query_string.decode("latin-1"))).get("path", "")
        else:
            return None
        path = artifact_path(named, workspace)
        if path is None:
            raise GatewayError(
                ErrorCode.PERMISSION_DENIED,
                f"The path is outside workspace '{workspace}''s artifacts: a request may "
                "name only its own workspace's files. Nothing was changed.",
                reason="workspace",
            )
        return path

    def forget(self) -> None:
        """Drop what reads remember: a registry write (a version deleted, say) may have
        changed which files are frozen."""
        self._remembered.clear()

    async def check_write(
        self,
        workspace: str,
        method: str,
        mlflow_path: str,
        query_string: bytes,
        requested: str | None,
    ) -> None:
        """Refuse a write that would change, add to or delete a READY version's files;
        ``requested`` is the path :meth:`requested_path` found in the request."""
        path = requested
        if path is None and method == "POST" and UI_UPLOAD.fullmatch(mlflow_path):
            path = await self._uploaded_path(workspace, query_string)
        if path is None:
            return
        owner = _owner(path)
        if owner is None:
            segments = path.split("/") if path else []
            if method == "DELETE" and (
                len(segments) < 2 or (len(segments) == 2 and segments[1] == "models")
            ):
                raise _refused(
                    f"Deleting '{path}' would delete the files of every version registered "
                    "from its experiment's runs and models",
                    "Delete the runs or models it holds one by one instead.",
                )
            return
        # A write to these files (allowed or not) outdates what reads remember of them.
        self._remembered.pop((workspace, owner), None)
        versions = await self._versions(workspace, owner)
        # Either way round: one of a version's files, or a directory holding them.
        touched = [v for v in versions if v.covers(path) or _within(v.files, path)]
        if touched and await self._first_signature(workspace, method, mlflow_path, path, touched):
            return
        if touched and path == touched[0].signature:
            raise _refused(
                f"'{path}' is the signature of {touched[0].described()}, which is signed "
                "already: a version's signature is written once and never changes or goes",
                "Register a new version to sign it with another key.",
            )
        if touched:
            raise _refused(
                f"'{path}' holds files of {touched[0].described()}, which is READY: a "
                "registered version's files never change",
                "Register a new version with the new files instead.",
            )

    async def _first_signature(
        self,
        workspace: str,
        method: str,
        mlflow_path: str,
        path: str,
        touched: list[FrozenVersion],
    ) -> bool:
        """Whether this write is the one upload of an unsigned version's signature: a
        plain ``PUT`` of the signature file of every version it touches, which does not
        exist yet. Anything else touching a signature file is refused as any frozen file."""
        match = ARTIFACTS.fullmatch(mlflow_path)
        if method != "PUT" or match is None:
            return False
        if any(version.signature != path for version in touched):
            return False
        # Asked as the request names it: MLflow's path, workspace prefix and all.
        return not await self._probe.has_artifact(
            workspace, unquote(match["path"]), about="whether this version is signed already"
        )

    async def _uploaded_path(self, workspace: str, query_string: bytes) -> str | None:
        """The MLflow UI's upload: the artifact path of file ``path`` in run
        ``run_uuid``'s artifacts."""
        query = dict(parse_qsl(query_string.decode("latin-1")))
        run_id = query.get("run_uuid") or query.get("run_id") or ""
        if not _ID.fullmatch(run_id):
            return None
        run = await self._probe.get(
            workspace, "/runs/get", {"run_id": run_id}, about="where this run's files lie"
        )
        root = proxied_location(((run or {}).get("run") or {}).get("info", {}).get("artifact_uri"))
        if root is None:
            return None
        return artifact_path(f"{root}/{query.get('path', '')}", workspace) or None

    async def _versions(self, workspace: str, owner: str) -> list[FrozenVersion]:
        """The READY versions made from the run or logged model ``owner`` (``run:ID`` or
        ``model:ID``), with files in this registry's artifact store."""
        kind, _, ident = owner.partition(":")
        search = f"run_id = '{ident}'" if kind == "run" else f"source_path = 'models:/{ident}'"
        answer = await self._probe.get(
            workspace,
            "/model-versions/search",
            {"filter": search, "max_results": _SEARCH_PAGE},
            about="which registered versions use these files",
        )
        found = []
        for version in (answer or {}).get("model_versions", []):
            if not isinstance(version, dict) or version.get("status") != READY:
                continue
            # A version made from a logged model (MLflow 3 clients) names only the model;
            # its files are where the model's artifact URI says.
            location = await files_location(self._probe, workspace, version)
            files = artifact_path(location, workspace) if location else None
            if files is not None:
                found.append(
                    FrozenVersion(
                        name=str(version.get("name", "")),
                        version=str(version.get("version", "")),
                        created_ms=str(version.get("creation_timestamp", "")),
                        files=files,
                        manifest_digest=tag_map(version).get(TAG_MANIFEST_DIGEST),
                    )
                )
        return found


def _owner(path: str) -> str | None:
    """``run:ID`` or ``model:ID``: whose files ``path`` lies among; None when neither."""
    segments = path.split("/")
    if len(segments) >= 3 and segments[1] == "models" and _ID.fullmatch(segments[2]):
        return f"model:{segments[2]}"
    if len(segments) >= 2 and segments[1] != "models" and _ID.fullmatch(segments[1]):
        return f"run:{segments[1]}"
    return None


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _refused(what: str, instead: str) -> GatewayError:
    return GatewayError(
        ErrorCode.INVALID_STATE,
        f"{what}. {instead} Nothing was changed.",
        reason="version_files_frozen",
    )
