"""What a registry write must satisfy before it reaches MLflow, beyond the route's role.

The gateway gathers the facts here — which models a write names, which alias it moves
and to which version, where a new version's source lives — and
:mod:`hokusai.authorization` decides:

- a write key limited to model-name patterns changes only the models they match;
- a workspace's protected aliases need the ``promote`` role, and with the workspace's
  promotion gate on may only name a version whose measured metric meets its baseline;
  with its requirement of signed versions on, only a version whose manifest is signed by
  a key the workspace trusts (the manifest and its signature are read from MLflow's
  artifact store, the signature checked with model-signing: ``hokusai.signing``);
- a model version's source must be the workspace's own: its run, its logged model, its
  registered model, or the registry's artifact store under that run or model. MLflow
  checks that a ``runs:/`` source matches the request's ``run_id`` but not that the run
  is in the caller's workspace, and takes an ``s3://``-style source as given: either
  made a version that read another team's artifacts.

Facts that need MLflow (does this run exist in the workspace? what does this version
carry?) are asked of MLflow with the caller's workspace header, so MLflow's own
isolation answers them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import anyio

from hokusai import authorization
from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.frozen_artifacts import artifact_path
from hokusai.gateway.mlflow_probe import MlflowProbe
from hokusai.gateway.resolution_cache import api_path
from hokusai.gateway.version_locations import files_location
from hokusai.integrity import (
    TAG_MANIFEST_DIGEST,
    TAG_SIGNER,
    IntegrityError,
    Manifest,
    check_manifest_digest,
    manifest_path,
    signature_path,
)
from hokusai.keys.records import KeyRecord
from hokusai.signing import (
    PublicKey,
    SignatureError,
    SigningUnavailableError,
    verify_manifest,
)
from hokusai.timestamps import utcnow
from hokusai.webhooks.events import tag_map
from hokusai.workspaces.records import (
    DEFAULT_PROTECTED_ALIASES,
    TrustedKeyRecord,
    WorkspaceRecord,
)

V2 = "/api/2.0/mlflow"
REGISTRY_WRITES = (f"{V2}/registered-models/", f"{V2}/model-versions/")
ALIAS = f"{V2}/registered-models/alias"
# MLflow's older way of promoting: a version's stage. A stage whose name (in lower case)
# is a protected alias ("Production") is protected the same way.
TRANSITION_STAGE = f"{V2}/model-versions/transition-stage"
CREATE_VERSION = f"{V2}/model-versions/create"
# What MLflow itself stores as the source of a prompt version (no artifacts behind it).
PROMPT_SOURCES = frozenset({"dummy-source"})


@dataclass(frozen=True)
class RequestFields:
    """The string fields of a request, from its JSON body and its query alike (which one
    MLflow reads depends on the method); a field given twice with different values is
    ambiguous and kept as all its values."""

    values: dict[str, tuple[str, ...]]
    parsed: bool

    def all(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    def one(self, name: str) -> str | None:
        found = self.values.get(name, ())
        return found[0] if len(set(found)) == 1 else None


def request_fields(body: bytes, query_string: bytes) -> RequestFields:
    values: dict[str, list[str]] = {}
    parsed = True
    if body:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for name, value in document.items():
                if isinstance(value, str | int) and not isinstance(value, bool):
                    values.setdefault(name, []).append(str(value))
        else:
            parsed = False
    try:
        pairs = parse_qsl(query_string.decode("utf-8"), keep_blank_values=True, errors="strict")
    except ValueError:
        pairs, parsed = [], False
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return RequestFields({k: tuple(v) for k, v in values.items()}, parsed)


def is_registry_write(mlflow_path: str) -> bool:
    return api_path(mlflow_path).startswith(REGISTRY_WRITES)


class RegistryGuard:
    """The checks of one gateway; ``probe`` asks MLflow, ``workspace_settings``
    reads a workspace's settings from the auth store (None when it has no row),
    ``trusted_keys`` the public keys it trusts to sign versions."""

    def __init__(
        self,
        probe: MlflowProbe,
        workspace_settings: Callable[[str], Awaitable[WorkspaceRecord | None]],
        trusted_keys: Callable[[str], Awaitable[list[TrustedKeyRecord]]],
    ) -> None:
        self._probe = probe
        self._settings = workspace_settings
        self._trusted_keys = trusted_keys

    async def check(
        self,
        key: KeyRecord,
        workspace: str,
        method: str,
        mlflow_path: str,
        body: bytes,
        query_string: bytes,
    ) -> dict[str, Any] | None:
        """Raise :class:`PermissionDenied` (or a :class:`GatewayError`) for a registry
        write ``key`` may not make in ``workspace``; return for any other request. The
        model version an alias write names, when a check read it (its event carries
        what it is), else None."""
        path = api_path(mlflow_path)
        what = f"{method} {mlflow_path}"
        fields = request_fields(body, query_string)
        names = {*fields.all("name"), *fields.all("new_name")}
        authorization.check_models(
            key, sorted(names) if names and fields.parsed else None, what, workspace
        )
        if path == ALIAS:
            return await self._check_alias(key, workspace, method, what, fields)
        if path == TRANSITION_STAGE:
            stages = tuple(stage.lower() for stage in fields.all("stage"))
            return await self._check_alias(key, workspace, "POST", what, fields, aliases=stages)
        if path == CREATE_VERSION:
            await self._check_source(key, workspace, fields)
        return None

    # ---- protected aliases --------------------------------------------------------------

    async def _check_alias(
        self,
        key: KeyRecord,
        workspace: str,
        method: str,
        what: str,
        fields: RequestFields,
        *,
        aliases: tuple[str, ...] | None = None,
    ) -> dict[str, Any] | None:
        """``aliases``: what the write moves (default: the request's ``alias``); a POST
        moves it to the request's ``version``, which the gates judge. The version, when
        read."""
        settings = await self._settings(workspace) or _defaults(workspace)
        model = fields.one("name") or ""
        aliases = fields.all("alias") if aliases is None else aliases
        for alias in aliases:
            authorization.check_alias(key, settings, model=model, alias=alias, what=what)
        protected = [alias for alias in aliases if settings.protects(alias)]
        judged = settings.promotion_gate or settings.require_signed_versions
        if method != "POST" or not judged or not protected:
            return None
        # The gates judge the version, whichever protected alias names it: asked once.
        version_number = fields.one("version")
        answer = None
        if model and version_number:
            answer = await self._get(
                workspace, "/model-versions/get", {"name": model, "version": version_number}
            )
        if answer is None:
            return None  # no such version: MLflow refuses the alias itself, readably
        version = dict(answer.get("model_version") or {})
        authorization.check_alias(
            key, settings, model=model, alias=protected[0], what=what, version=version
        )
        if settings.require_signed_versions:
            authorization.check_signed(
                key,
                settings,
                model=model,
                alias=protected[0],
                what=what,
                version=str(version.get("version", version_number)),
                problem=await self._signature_problem(workspace, version),
            )
        return version

    async def _signature_problem(
        self, workspace: str, version: Mapping[str, Any]
    ) -> SignatureError | None:
        """What is wrong with the version's signature, read from MLflow in ``workspace``:
        None when its manifest is signed by a key the workspace trusts and is the one
        the version records."""
        subject = f"version {version.get('version')} of model '{version.get('name')}'"
        tags = tag_map(version)
        claimed = tags.get(TAG_SIGNER)
        location = await files_location(self._probe, workspace, dict(version))
        # MLflow's own path of the files (read as it is, workspace prefix and all), when
        # they lie in this workspace's artifacts.
        files = location if location and artifact_path(location, workspace) else None
        recorded = tags.get(TAG_MANIFEST_DIGEST)
        if files is None or recorded is None:
            return SignatureError(
                subject,
                "unsigned",
                "it records no manifest in the registry's artifact store, so it cannot be signed",
            )
        about = "what this version's signature is"
        manifest = await self._probe.artifact(workspace, manifest_path(files), about=about)
        if manifest is None:
            return SignatureError(subject, "unsigned", "its manifest is missing")
        try:
            check_manifest_digest(Manifest.from_json(manifest, subject=subject), recorded, subject)
        except IntegrityError as changed:
            return SignatureError(subject, "invalid", "; ".join(changed.problems), signer=claimed)
        bundle = await self._probe.artifact(workspace, signature_path(files), about=about)
        trusted = [
            PublicKey(k.fingerprint, k.public_key) for k in await self._trusted_keys(workspace)
        ]
        try:
            await anyio.to_thread.run_sync(
                lambda: verify_manifest(manifest, bundle, trusted, subject=subject, claimed=claimed)
            )
        except SignatureError as problem:
            return problem
        except SigningUnavailableError as missing:
            raise GatewayError(
                ErrorCode.INTERNAL_ERROR,
                f"Workspace '{workspace}' requires signed versions, and this gateway cannot "
                f"check signatures: {missing}. Nothing was changed.",
                reason="signing_unavailable",
            ) from None
        return None

    # ---- sources ----------------------------------------------------------------------

    async def _check_source(self, key: KeyRecord, workspace: str, fields: RequestFields) -> None:
        source = fields.one("source")
        if source is None:
            return  # missing or ambiguous: MLflow refuses it as invalid
        if source in PROMPT_SOURCES:
            return
        run_ids = set(fields.all("run_id")) - {""}
        model_ids = set(fields.all("model_id")) - {""}
        parts = urlsplit(source)
        scheme = parts.scheme.lower()
        if scheme == "runs":
            run_id = parts.path.lstrip("/").split("/", 1)[0]
            if parts.netloc or not run_id:
                raise authorization.refuse_source(
                    key, source, "it is not runs:/<run_id>/<path>", workspace
                )
            run_ids.add(run_id)
        elif scheme == "models":
            if parts.netloc:
                raise authorization.refuse_source(
                    key, source, "it names another registry", workspace
                )
            reference = parts.path.lstrip("/")
            if reference.startswith("m-") and "/" not in reference.rstrip("/"):
                model_ids.add(reference.rstrip("/"))
            else:
                name = _registered_model_name(reference)
                if (
                    not name
                    or await self._get(workspace, "/registered-models/get", {"name": name}) is None
                ):
                    raise authorization.refuse_source(
                        key, source, f"workspace '{workspace}' has no model '{name}'", workspace
                    )
        elif scheme == "mlflow-artifacts":
            if parts.netloc:
                raise authorization.refuse_source(
                    key, source, "it names another artifact server", workspace
                )
            first = parts.path.lstrip("/").split("/")
            if first[0] == "workspaces" and (len(first) < 2 or first[1] != workspace):
                owner = first[1] if len(first) > 1 else "?"
                raise authorization.refuse_source(
                    key, source, f"it lies in workspace '{owner}'s artifacts", workspace
                )
            if not run_ids and not model_ids:
                raise authorization.refuse_source(
                    key,
                    source,
                    "an artifact source must name the run_id or model_id it belongs to",
                    workspace,
                )
        else:
            raise authorization.refuse_source(
                key,
                source,
                "only runs:/, models:/ and mlflow-artifacts: sources of the registry's own "
                "store are accepted",
                workspace,
            )
        for run_id in sorted(run_ids):
            if await self._get(workspace, "/runs/get", {"run_id": run_id}) is None:
                raise authorization.refuse_source(
                    key, source, f"run {run_id} is not in workspace '{workspace}'", workspace
                )
        for model_id in sorted(model_ids):
            if await self._get(workspace, f"/logged-models/{quote(model_id, safe='')}") is None:
                raise authorization.refuse_source(
                    key,
                    source,
                    f"logged model {model_id} is not in workspace '{workspace}'",
                    workspace,
                )

    async def _get(
        self, workspace: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        return await self._probe.get(
            workspace, path, params, about="whether this write belongs to the workspace"
        )


def _registered_model_name(reference: str) -> str:
    """The model of ``NAME/VERSION``, ``NAME/STAGE`` or ``NAME@ALIAS``."""
    if "@" in reference:
        return reference.rpartition("@")[0]
    return reference.rpartition("/")[0] if "/" in reference else reference


def _defaults(workspace: str) -> WorkspaceRecord:
    """The settings of a workspace MLflow has and the auth store does not (made outside
    the platform): the default protection, no gate."""
    now = utcnow()
    return WorkspaceRecord(
        name=workspace,
        description="",
        protected_aliases=DEFAULT_PROTECTED_ALIASES,
        promotion_gate=False,
        created_at=now,
        updated_at=now,
    )
