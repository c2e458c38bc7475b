"""The MLflow route: how a request the gateway has let through reaches MLflow.

By the time a request gets here its key is known and allowed (``gateway/app.py``:
authentication, route policy, workspace, rate limit). What is left, in order: the key's
in-flight limit and the body limits; the body, read whole for an API call or streamed for
an artifact transfer; the places a body may name (``artifact_locations``); the registry
guard (``registry_guard``) and frozen version files (``frozen_artifacts``) for writes;
then the answer, from the artifact cache, the resolution cache or MLflow itself (the
proxy), with the audit row of a write and its events written before the writer has the
answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote

import anyio
from sqlalchemy import Engine
from starlette.types import Receive, Scope, Send

from hokusai.errors import PermissionDenied
from hokusai.gateway import registry_changes, upload_digests
from hokusai.gateway.artifact_cache import ArtifactCache, ContentKey
from hokusai.gateway.artifact_locations import check_locations, location_fields
from hokusai.gateway.audit import AuditEntry, AuditLog
from hokusai.gateway.body import check_content_length, has_body, read_body, stream_body
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.event_capture import EventCapture
from hokusai.gateway.exchange import Exchange
from hokusai.gateway.frozen_artifacts import FrozenArtifacts
from hokusai.gateway.limits import InFlightLimit
from hokusai.gateway.manifest_maker import ManifestMaker
from hokusai.gateway.observability import Metrics
from hokusai.gateway.proxy import SAFE_METHODS, MlflowProxy
from hokusai.gateway.registry_guard import RegistryGuard, is_registry_write
from hokusai.gateway.resolution_cache import (
    NOTHING,
    CachedAnswer,
    ResolutionCache,
    WriteEffect,
    cacheable_read,
    write_effect,
)
from hokusai.gateway.transfers import is_artifact_transfer, is_artifact_upload
from hokusai.gateway.upload_digests import StreamDigest
from hokusai.gateway.write_queue import WriteQueue
from hokusai.integrity import TAG_MANIFEST_DIGEST
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope as KeyScope
from hokusai.settings import Settings
from hokusai.timestamps import utcnow
from hokusai.webhooks.events import captured_endpoint

log = logging.getLogger("hokusai.gateway")


class MlflowRoute:
    """The parts of one gateway that a request to MLflow passes after it was let
    through; ``refused`` turns an authorization refusal into the gateway's answer."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        metrics: Metrics,
        proxy: MlflowProxy,
        audit: AuditLog,
        events: EventCapture,
        in_flight: InFlightLimit,
        writes: WriteQueue,
        registry_guard: RegistryGuard,
        frozen_artifacts: FrozenArtifacts,
        manifest_maker: ManifestMaker,
        artifact_cache: ArtifactCache | None,
        resolution_cache: ResolutionCache | None,
        origin: str,
        refused: Callable[[PermissionDenied], GatewayError],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.proxy = proxy
        self.audit = audit
        self.events = events
        self.in_flight = in_flight
        self.writes = writes
        self.registry_guard = registry_guard
        self.frozen_artifacts = frozen_artifacts
        self.manifest_maker = manifest_maker
        self.artifact_cache = artifact_cache
        self.resolution_cache = resolution_cache
        self.origin = origin
        self._refused = refused

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        key: KeyRecord,
        workspace: str,
        access: KeyScope,
        mlflow_path: str,
        raw_mlflow_path: bytes,
    ) -> None:
        """Answer a request ``key`` may make in ``workspace`` (with ``access``)."""
        transfer = is_artifact_transfer(mlflow_path)
        upload = is_artifact_upload(mlflow_path)
        max_body = self.settings.max_artifact_bytes if upload else self.settings.max_body_bytes
        check_content_length(scope["headers"], max_body)
        with self._in_flight(key):
            await self._forward_held(
                scope,
                receive,
                send,
                exchange,
                key,
                workspace,
                access,
                mlflow_path,
                raw_mlflow_path,
                transfer=transfer,
                max_body=max_body,
            )

    @contextlib.contextmanager
    def _in_flight(self, key: KeyRecord) -> Iterator[None]:
        """One of the key's in-flight requests, held for the block (429 beyond its limit)."""
        try:
            self.in_flight.acquire(key.id)
        except GatewayError:
            self.metrics.rate_limited.labels("in_flight").inc()
            raise
        try:
            yield
        finally:
            self.in_flight.release(key.id)

    async def _forward_held(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        key: KeyRecord,
        workspace: str,
        access: KeyScope,
        mlflow_path: str,
        raw_mlflow_path: bytes,
        *,
        transfer: bool,
        max_body: int,
    ) -> None:
        """The part of :meth:`forward` that holds one of the key's in-flight requests."""
        method = scope["method"]
        idle = self.settings.body_idle_timeout
        body: bytes | AsyncIterator[bytes] | None = None
        if has_body(scope["headers"]):
            # An API body is read whole before any upstream connection is taken: a slow
            # client holds only its own request. Artifact transfers stream.
            if transfer:
                body = stream_body(receive, max_body, idle)
            else:
                body = await read_body(receive, max_body, idle)
        api_body = body if isinstance(body, bytes) else b""  # a streamed transfer: none
        chosen = location_fields(method, mlflow_path)
        if chosen and not (key.scope is KeyScope.ADMIN and self.settings.admin_artifact_locations):
            check_locations(api_body, chosen, self.settings.artifact_root)
        query_string = scope.get("query_string", b"")
        audited = access is not KeyScope.READ
        # What MLflow's store may change: not reads, and not the admin-scope GETs
        # (workspaces, MLflow's webhooks), which are audited but change nothing.
        changes = audited and method not in SAFE_METHODS
        named_version = None
        if changes and is_registry_write(mlflow_path):
            try:
                named_version = await self.registry_guard.check(
                    key, workspace, method, mlflow_path, api_body, query_string
                )
            except PermissionDenied as refusal:
                raise self._refused(refusal) from None
        requested = (
            self.frozen_artifacts.requested_path(workspace, mlflow_path, query_string)
            if transfer
            else None
        )
        uploaded: StreamDigest | None = None
        if changes:
            await self.frozen_artifacts.check_write(
                workspace, method, mlflow_path, query_string, requested
            )
            if requested is not None and method == "PUT":
                uploaded = StreamDigest()
                if isinstance(body, bytes | None):
                    uploaded.whole(body or b"")
                else:
                    body = uploaded.passing(body)
        elif (
            requested
            and method == "GET"
            and body is None
            and not query_string
            and await self._serve_cached_file(
                scope, receive, send, exchange, key, workspace, requested, raw_mlflow_path
            )
        ):
            return
        cache = self.resolution_cache
        keep = None
        if cache is not None and body is None:
            read = cacheable_read(method, mlflow_path, query_string, workspace)
            if read is not None:
                cached = cache.get(read.key)
                if cached is not None:
                    await _send_cached(send, cached)
                    return
                ticket = cache.ticket()

                def keep(status: int, headers: list[tuple[bytes, bytes]], answer: bytes) -> None:
                    cache.put(read, ticket, status, headers, answer)

        effect = (
            write_effect(mlflow_path, api_body, query_string, workspace) if changes else NOTHING
        )
        announced = False

        async def announce_change() -> None:
            """Before the writer's answer: this replica's cache forgets what the write may
            have changed, and the other replicas are told through the store."""
            nonlocal announced
            if announced or effect.none:
                return
            announced = True
            await self._registry_changed(effect)

        captured = captured_endpoint(method, mlflow_path)
        inspect = None
        if captured is not None:

            async def inspect(status: int, request_body: bytes, response_body: bytes) -> None:
                if captured == "model-versions/create" and status == 200:
                    response_body = await self._with_manifest(workspace, response_body)
                await self.events.record(
                    captured,
                    method,
                    query_string,
                    key.id,
                    status,
                    request_body,
                    response_body,
                    self.proxy.client,
                    workspace=workspace,
                    owner=key.owner,
                    version=named_version,
                )

        async def before_answer(status: int) -> None:
            if status >= 500:
                self.metrics.upstream_errors.labels("5xx").inc()
            await announce_change()
            if changes and requested is not None and 200 <= status < 300:
                await self._note_artifact_write(workspace, method, requested, uploaded)
            if audited:
                await anyio.to_thread.run_sync(
                    self.audit.record,
                    AuditEntry(
                        request_id=exchange.request_id,
                        key_id=key.id,
                        owner=key.owner,
                        action="mlflow.write",
                        method=method,
                        path=mlflow_path,
                        status=status,
                        client=exchange.client,
                        workspace=workspace,
                    ),
                )

        # Changes to MLflow's store take their turn; reads and file transfers never wait.
        queued = self.writes.turn() if changes and not transfer else contextlib.nullcontext()
        try:
            async with queued:
                result = await self.proxy.forward(
                    method=method,
                    raw_mlflow_path=raw_mlflow_path,
                    query_string=query_string,
                    headers=scope["headers"],
                    identity=(key.id, key.owner),
                    workspace=workspace,
                    request_id=exchange.request_id,
                    body=body,
                    transfer=transfer,
                    send=send,
                    on_response_start=before_answer,
                    inspect=inspect,
                    keep=keep,
                )
        finally:
            # MLflow gave no answer (or the gateway failed after sending): the write may
            # have been applied all the same.
            with anyio.CancelScope(shield=True):
                await announce_change()
        exchange.upstream_seconds = result.upstream_seconds

    async def _serve_cached_file(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        key: KeyRecord,
        workspace: str,
        path: str,
        raw_mlflow_path: bytes,
    ) -> bool:
        """Serve a plain download of the artifact file ``path`` from the artifact cache
        when it is a READY version's; False (nothing sent) otherwise: it is proxied. The
        cache also reads the version's manifest, named the way the request names ``path``."""
        cache = self.artifact_cache
        if cache is None:
            return False
        version = await self.frozen_artifacts.version_of(workspace, path)
        if version is None:
            return False

        def download(artifact: str) -> contextlib.AbstractAsyncContextManager[Any]:
            return self.proxy.download(
                raw_mlflow_path=_raw_path_of(raw_mlflow_path, path, artifact),
                identity=(key.id, key.owner),
                workspace=workspace,
                request_id=exchange.request_id,
            )

        return await cache.serve(
            ContentKey(workspace, version, path), download, scope, receive, send
        )

    async def _note_artifact_write(
        self, workspace: str, method: str, path: str, uploaded: StreamDigest | None
    ) -> None:
        """MLflow stored an artifact write: record the digest of a file that streamed
        through, or forget the digests a write the gateway did not see through changed."""
        digest = uploaded.result() if uploaded is not None else None
        try:
            if digest is not None:
                await anyio.to_thread.run_sync(
                    upload_digests.record, self.engine, workspace, path, digest, utcnow()
                )
            else:
                await anyio.to_thread.run_sync(upload_digests.forget, self.engine, workspace, path)
        except Exception as exc:  # the file is stored either way; it just cannot be vouched for
            log.warning(
                "could not record the digest of an artifact write (%s): a version made "
                "from it gets no manifest from the gateway",
                type(exc).__name__,
            )

    async def _with_manifest(self, workspace: str, response_body: bytes) -> bytes:
        """The answer to a version's creation, with the manifest the gateway made for it
        (``gateway/manifest_maker.py``) among its tags: its events carry the digest."""
        try:
            answer = json.loads(response_body)
            version = answer["model_version"]
        except (ValueError, KeyError, TypeError):
            return response_body
        if not isinstance(version, dict):
            return response_body
        made = await self.manifest_maker.make_for(workspace, version)
        if made is None:
            return response_body
        version.setdefault("tags", []).append({"key": TAG_MANIFEST_DIGEST, "value": made})
        return json.dumps(answer).encode()

    async def _registry_changed(self, effect: WriteEffect) -> None:
        self.frozen_artifacts.forget()
        if self.resolution_cache is not None:
            self.resolution_cache.invalidate(effect)
        try:
            await anyio.to_thread.run_sync(
                registry_changes.record, self.engine, effect, self.origin
            )
        except Exception as exc:  # the write itself is done: the other replicas age it out
            log.warning(
                "could not record a registry change for the other replicas (%s): their "
                "resolution caches may serve the old answer for up to %g s",
                type(exc).__name__,
                self.settings.resolution_cache_seconds,
            )


def _raw_path_of(raw_mlflow_path: bytes, path: str, artifact: str) -> bytes:
    """The MLflow path naming ``artifact`` as ``raw_mlflow_path`` names ``path``: the same
    API and workspace prefix, with ``artifact`` in place of ``path``."""
    if artifact == path:
        return raw_mlflow_path
    decoded = unquote(raw_mlflow_path.decode("latin-1")).rstrip("/")
    head = decoded.removesuffix(path)
    if head == decoded or not head.endswith("/"):
        head = "/api/2.0/mlflow-artifacts/artifacts/"
    return quote(head + artifact, safe="/").encode()


async def _send_cached(send: Send, answer: CachedAnswer) -> None:
    """MLflow's answer as it was given; the gateway's own headers are added on the way."""
    await send(
        {"type": "http.response.start", "status": answer.status, "headers": list(answer.headers)}
    )
    await send({"type": "http.response.body", "body": answer.body})
