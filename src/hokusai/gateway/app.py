"""The gateway: one ASGI application in front of MLflow.

Every request passes the same steps, in this order (docs/architecture.md, "Gateway"):
request id -> canonical path -> no key in the URL -> locate in the URL space ->
authenticate -> route policy -> rate limit -> resolution cache (model resolution reads)
or proxy (or answer locally) -> audit -> metrics and one JSON log line. Pure ASGI, no
buffering middleware: bodies stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import RedirectResponse
from starlette.types import Message, Receive, Scope, Send

from hokusai import authorization
from hokusai.admin.services import build_services
from hokusai.db.engine import make_engine
from hokusai.errors import ErrorCode, PermissionDenied
from hokusai.gateway import client_address, credentials, registry_changes, urlspace
from hokusai.gateway.admin_api import build_admin_api
from hokusai.gateway.artifact_cache import ArtifactCache, ContentKey
from hokusai.gateway.artifact_locations import check_locations, location_fields
from hokusai.gateway.audit import AuditEntry, AuditLog
from hokusai.gateway.body import (
    ClientDisconnected,
    check_content_length,
    has_body,
    read_body,
    stream_body,
)
from hokusai.gateway.console import Console
from hokusai.gateway.errors import (
    GatewayError,
    domain_answer,
    send_error,
    unformatted_server_error,
)
from hokusai.gateway.event_capture import EventCapture
from hokusai.gateway.frozen_artifacts import ARTIFACTS as ARTIFACT_FILE
from hokusai.gateway.frozen_artifacts import FrozenArtifacts, artifact_path
from hokusai.gateway.limits import InFlightLimit, per_key_limit
from hokusai.gateway.mlflow_probe import MlflowProbe
from hokusai.gateway.observability import Metrics, access_log, route_class
from hokusai.gateway.policy import Hidden, classify
from hokusai.gateway.proxy import SAFE_METHODS, MlflowProxy, UpstreamError
from hokusai.gateway.ratelimit import FailureWindow, key_limiter, retry_after_header
from hokusai.gateway.registry_changes import ChangeFollower
from hokusai.gateway.registry_guard import RegistryGuard, is_registry_write
from hokusai.gateway.resolution_cache import (
    NOTHING,
    CachedAnswer,
    ResolutionCache,
    WriteEffect,
    api_path,
    cacheable_read,
    write_effect,
)
from hokusai.gateway.sessions import Sessions, same_origin, session_token
from hokusai.gateway.signin import SignIn, login_redirect
from hokusai.gateway.sso import SingleSignOn
from hokusai.gateway.transfers import is_artifact_transfer, is_artifact_upload
from hokusai.gateway.urlspace import Area
from hokusai.gateway.write_queue import WriteQueue
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope as KeyScope
from hokusai.keys.service import KeyRejected, KeyService
from hokusai.logs import redact
from hokusai.settings import Settings
from hokusai.version import __version__
from hokusai.webhooks.events import captured_endpoint
from hokusai.webhooks.outbox import dispatch_lag_seconds
from hokusai.webhooks.worker import run_background
from hokusai.workspaces import store as workspace_store
from hokusai.workspaces.records import WORKSPACE_HEADER, WorkspaceRecord

log = logging.getLogger("hokusai.gateway")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# MLflow's workspace header, as ASGI hands header names (lower case).
_WORKSPACE_HEADER = WORKSPACE_HEADER.lower().encode()


@dataclass
class Exchange:
    """What the gateway learns about one request while answering it."""

    request_id: str
    method: str
    path: str
    client: str
    started_at: float
    status: int = 0
    response_started: bool = False
    response_complete: bool = False
    # A 5xx that was not in the error format was answered with one instead.
    answer_replaced: bool = False
    route_class: str = "other"
    key: KeyRecord | None = None
    # The workspace the request acts in, once the key is known.
    workspace: str | None = None
    # Authenticated by a browser session's cookie (not a key header): writes must be
    # same-origin.
    via_session: bool = False
    upstream_seconds: float | None = None
    error_reason: str | None = None


class Gateway:
    """The ASGI application. ``Gateway(Settings())`` is all ``uvicorn`` needs."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.resolved_database_url)
        self.keys = KeyService(
            self.engine, settings.resolved_secret, cache_seconds=settings.key_cache_seconds
        )
        self.audit = AuditLog(self.engine)
        self.metrics = Metrics()
        self.proxy = MlflowProxy(
            settings.mlflow_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            api_timeout=settings.upstream_api_timeout,
            pool_size=settings.upstream_pool_size,
        )
        self.in_flight = InFlightLimit(
            per_key_limit(settings.max_in_flight_per_key, settings.upstream_pool_size)
        )
        self.writes = WriteQueue(
            settings.mlflow_write_concurrency or 0,
            settings.mlflow_write_queue_timeout,
            self.metrics.mlflow_writes_waiting,
        )
        self.events = EventCapture(self.engine, settings.mlflow_url, self.metrics)
        self.sessions = Sessions(
            self.engine,
            self.keys,
            idle=settings.session_idle_timeout,
            lifetime=settings.session_lifetime,
            cache_seconds=settings.key_cache_seconds,
        )
        self.mlflow_probe = MlflowProbe(self.proxy.client, settings.mlflow_url)
        self.registry_guard = RegistryGuard(self.mlflow_probe, self._workspace_settings)
        self.frozen_artifacts = FrozenArtifacts(self.mlflow_probe)
        self.artifact_cache = (
            ArtifactCache(
                settings.resolved_artifact_cache_dir,
                settings.artifact_cache_max_bytes,
                self.metrics,
            )
            if settings.artifact_cache_max_bytes > 0
            else None
        )
        self.key_limiter = key_limiter(settings, self.engine, self.metrics)
        self.auth_failures = FailureWindow(settings.auth_failures_per_minute)
        # A revocation through this gateway takes effect here at once, not within the TTL,
        # for the key and for the browser sessions made with it.
        self.services = build_services(self.engine, settings, self.keys, on_revoked=self._revoked)
        self.signin = SignIn(
            self.sessions,
            self.keys,
            self.audit,
            base_url=self._base_url,
            failed=self._sign_in_failed,
            body_idle_timeout=settings.body_idle_timeout,
            sso=(
                SingleSignOn(
                    settings,
                    self.engine,
                    self.keys,
                    self.sessions,
                    self.audit,
                    failed=self._sign_in_failed,
                )
                if settings.sso_enabled
                else None
            ),
        )
        self.admin_api = build_admin_api(self.services)
        self.console = Console(
            self.services,
            readiness=self.readiness,
            body_idle_timeout=settings.body_idle_timeout,
        )
        # The resolution cache and the follower of other replicas' registry writes that
        # keeps it in step (started with the lifespan; until then nothing is served).
        self.origin = registry_changes.new_origin()
        self.resolution_cache: ResolutionCache | None = None
        self.change_follower: ChangeFollower | None = None
        if settings.resolution_cache_seconds > 0:
            self.resolution_cache = ResolutionCache(
                max_age=settings.resolution_cache_seconds,
                max_entries=settings.resolution_cache_max_entries,
                max_bytes=settings.resolution_cache_max_bytes,
                metrics=self.metrics,
            )
            self.change_follower = ChangeFollower(
                self.engine,
                self.resolution_cache,
                settings.resolution_cache_replica_lag,
                origin=self.origin,
            )

    # ---- ASGI entry point -------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets: nothing here speaks them
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if os.environ.get("HOKUSAI_TRUST_FORWARDED_FOR"):
                        log.warning(
                            "HOKUSAI_TRUST_FORWARDED_FOR is no longer read: list the reverse "
                            "proxies in HOKUSAI_TRUSTED_PROXIES instead; until then "
                            "X-Forwarded-For is ignored"
                        )
                    if self.settings.dispatcher:
                        group.start_soon(
                            run_background, self.engine, self.settings, stop, self.metrics
                        )
                    if self.change_follower is not None:
                        group.start_soon(self.change_follower.run, stop)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    stop.set()
                    break
        await self.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    async def aclose(self) -> None:
        if self.artifact_cache is not None:
            await self.artifact_cache.aclose()
        await self.proxy.aclose()
        await self.key_limiter.aclose()
        self.engine.dispose()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        given_id = headers.get(b"x-request-id", b"").decode("latin-1")
        exchange = Exchange(
            request_id=given_id if _REQUEST_ID.match(given_id) else uuid.uuid4().hex,
            method=scope["method"],
            path=scope["path"],
            client=self._client_address(scope),
            started_at=time.perf_counter(),
        )

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                replacement = unformatted_server_error(
                    message["status"], message.get("headers", []), exchange.request_id
                )
                if replacement is not None:
                    # MLflow's HTML error page (or any plain-text 5xx) never reaches the
                    # client: the error format with the request id does.
                    log.warning(
                        "a 5xx answer was not in the error format; answered in it instead",
                        extra={
                            "fields": {
                                "request_id": exchange.request_id,
                                "status": message["status"],
                            }
                        },
                    )
                    await send_error(send_tagged, replacement, exchange.request_id)
                    exchange.answer_replaced = True  # from now on, swallow the page's body
                    return
                exchange.status = message["status"]
                exchange.response_started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", exchange.request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                if exchange.answer_replaced:
                    return  # the replaced answer's own body: already answered
                if not message.get("more_body", False):
                    exchange.response_complete = True
            await send(message)

        try:
            await self._dispatch(scope, receive, send_tagged, headers, exchange)
        except GatewayError as error:
            exchange.error_reason = error.reason
            if isinstance(error, UpstreamError):
                self.metrics.upstream_errors.labels(error.kind).inc()
            if exchange.response_started:
                raise
            if error.error_code == ErrorCode.PERMISSION_DENIED and exchange.key is not None:
                # A known key trying what it may not do is worth an audit row, with what
                # refused it: ``hokusai doctor`` explains it to the key's holder.
                await anyio.to_thread.run_sync(
                    self.audit.record,
                    AuditEntry(
                        request_id=exchange.request_id,
                        key_id=exchange.key.id,
                        owner=exchange.key.owner,
                        action=authorization.DENIED,
                        method=exchange.method,
                        path=exchange.path,
                        status=error.status,
                        client=exchange.client,
                        detail=error.details or None,
                        workspace=exchange.workspace or exchange.key.workspace,
                    ),
                )
            await send_error(send_tagged, error, exchange.request_id)
        except ClientDisconnected:
            exchange.error_reason = "client_disconnected"  # nobody is left to answer
        except Exception:
            log.exception("unexpected error", extra={"fields": {"request_id": exchange.request_id}})
            if exchange.response_complete:
                # Answered already (the Hokusai API's catch-all answers in the error format
                # and re-raises so that the failure is logged here, once).
                return
            if exchange.response_started:
                raise
            await send_error(
                send_tagged,
                GatewayError(
                    ErrorCode.INTERNAL_ERROR,
                    f"The gateway failed unexpectedly (request id {exchange.request_id}); "
                    "the operator's log has the details under that id.",
                ),
                exchange.request_id,
            )
        finally:
            self._observe(exchange)

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        exchange: Exchange,
    ) -> None:
        request_path = urlspace.canonical(scope.get("raw_path") or scope["path"].encode())
        credentials.refuse_key_in_query(scope.get("query_string", b""))
        credentials.refuse_key_in_path(request_path.path)
        # From here on the request has one path: the Hokusai API routes on it too.
        scope["path"], scope["raw_path"] = request_path.path, request_path.raw
        exchange.path = request_path.path
        target = urlspace.locate(request_path.path)
        exchange.route_class = route_class(target.area.value, target.mlflow_path)

        if target.area is Area.HEALTH:
            await _send_json(
                send,
                200,
                {
                    "status": "ok",
                    "service": "hokusai-gateway",
                    "version": __version__,
                },
            )
        elif target.area is Area.READY:
            status, body = await self.readiness()
            await _send_json(send, status, body)
        elif target.area is Area.METRICS:
            with contextlib.suppress(Exception):  # the store being down must not hide metrics
                self.metrics.dispatch_lag.set(
                    await anyio.to_thread.run_sync(dispatch_lag_seconds, self.engine)
                )
            await _send_bytes(send, 200, self.metrics.render(), b"text/plain; version=0.0.4")
        elif target.area is Area.SIGN_IN:
            if scope["path"] == "/" and not _wants_page(headers):
                # An API client at the bare host: the hint names the tracking URI.
                raise urlspace.not_found(scope["path"], self._base_url(scope, headers))
            await self.signin.handle(
                scope, receive, send, headers, exchange.request_id, exchange.client
            )
        elif target.area is Area.ADMIN_API:
            if scope["path"] not in urlspace.DOCS_PATHS:
                exchange.key = await self._authenticate(headers, exchange)
                self._check_same_origin(scope, headers, exchange)
                await self._rate_limit(exchange.key)
            scope.setdefault("state", {})
            scope["state"].update(
                key=exchange.key, request_id=exchange.request_id, client=exchange.client
            )
            await self.admin_api(scope, receive, send)
        elif target.area is Area.CONSOLE:
            await self._console(scope, receive, send, headers, exchange)
        elif target.area is Area.MLFLOW:
            # In canonical form the prefix is the same characters in the raw path.
            await self._forward(
                scope,
                receive,
                send,
                headers,
                exchange,
                target.mlflow_path,
                request_path.raw[len(target.prefix) :],
            )
        else:
            raise urlspace.not_found(scope["path"], self._base_url(scope, headers))

    # ---- the admin console ---------------------------------------------------------

    async def _console(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        exchange: Exchange,
    ) -> None:
        """The console's pages, for a key header or a session, by the rules of every
        request: a write through a session must come from this site, and the key's rate
        limit applies."""
        path = scope["path"]
        if not path.startswith(urlspace.CONSOLE_PREFIX):
            await RedirectResponse(urlspace.CONSOLE_PREFIX, 308)(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        key = await self._signed_in(
            scope,
            receive,
            send,
            headers,
            exchange,
            page=scope["method"] in ("GET", "HEAD"),
            back_to=path + ("?" + query if query else ""),
        )
        if key is None:
            return
        await self._rate_limit(key)
        await self.console.handle(
            scope,
            receive,
            send,
            key=key,
            request_id=exchange.request_id,
            client=exchange.client,
        )

    # ---- the MLflow path ----------------------------------------------------------

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        exchange: Exchange,
        mlflow_path: str,
        raw_mlflow_path: bytes,
    ) -> None:
        method = scope["method"]
        key = await self._signed_in(
            scope,
            receive,
            send,
            headers,
            exchange,
            page=mlflow_path == "/" and method == "GET" and _wants_page(headers),
            back_to=exchange.path,
        )
        if key is None:
            return
        # A workspace's key reading MLflow's workspaces sees its own only.
        own = key.workspace
        workspace_read = _workspace_read(mlflow_path) if method == "GET" and own else None
        try:
            workspace = exchange.workspace = authorization.request_workspace(
                key, _header_text(headers.get(_WORKSPACE_HEADER))
            )
            access = self._authorize(method, mlflow_path, key, scope, headers, workspace)
            if workspace_read not in (None, _ALL_WORKSPACES):  # one workspace by name
                authorization.request_workspace(key, workspace_read)
        except PermissionDenied as refusal:
            raise self._refused(refusal) from None
        await self._rate_limit(key)
        if own and workspace_read == _ALL_WORKSPACES:
            # MLflow would list every team's workspace: the key's own only (the MLflow UI
            # picks its workspace from this list).
            settings = await self._workspace_settings(own)
            description = settings.description if settings else ""
            await _send_json(send, 200, {"workspaces": [{"name": own, "description": description}]})
            return

        transfer = is_artifact_transfer(mlflow_path)
        upload = is_artifact_upload(mlflow_path)
        max_body = self.settings.max_artifact_bytes if upload else self.settings.max_body_bytes
        check_content_length(scope["headers"], max_body)
        try:
            self.in_flight.acquire(key.id)
        except GatewayError:
            self.metrics.rate_limited.labels("in_flight").inc()
            raise
        try:
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
        """The part of _forward that holds one of the key's in-flight requests."""
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
        if changes and is_registry_write(mlflow_path):
            try:
                await self.registry_guard.check(
                    key, workspace, method, mlflow_path, api_body, query_string
                )
            except PermissionDenied as refusal:
                raise self._refused(refusal) from None
        if transfer:
            self.frozen_artifacts.check_namespace(workspace, mlflow_path, query_string)
        if changes:
            await self.frozen_artifacts.check_write(workspace, method, mlflow_path, query_string)
        elif await self._serve_cached_file(
            scope, receive, send, exchange, key, workspace, mlflow_path, raw_mlflow_path
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
                )

        async def before_answer(status: int) -> None:
            if status >= 500:
                self.metrics.upstream_errors.labels("5xx").inc()
            await announce_change()
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
        mlflow_path: str,
        raw_mlflow_path: bytes,
    ) -> bool:
        """Serve a download of a READY version's file from the artifact cache; False
        (nothing sent) for any other request, which is proxied."""
        cache = self.artifact_cache
        if cache is None or scope["method"] != "GET" or scope.get("query_string"):
            return False
        match = ARTIFACT_FILE.fullmatch(mlflow_path)
        if match is None or has_body(scope["headers"]):
            return False
        path = artifact_path(match["path"], workspace)
        version = await self.frozen_artifacts.version_of(workspace, path) if path else None
        if path is None or version is None:
            return False

        def opener() -> contextlib.AbstractAsyncContextManager[Any]:
            return self.proxy.download(
                raw_mlflow_path=raw_mlflow_path,
                identity=(key.id, key.owner),
                workspace=workspace,
                request_id=exchange.request_id,
            )

        return await cache.serve(ContentKey(workspace, version, path), opener, scope, receive, send)

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

    async def _authenticate(self, headers: dict[bytes, bytes], exchange: Exchange) -> KeyRecord:
        """The caller's key record, or an error saying why not.

        The key is checked first and the failed-attempt window only afterwards, for keys
        that fail: a valid key is accepted however many failures its address has, so the
        window cannot be used to lock anyone out. Missing, malformed and mistyped keys
        (bad checksum) are refused without touching the store.
        """
        try:
            key = credentials.key_from_headers(headers)
            token = session_token(headers.get(b"cookie")) if key is None else None
            if token is not None:
                # No key header: a browser signed in at /login.
                signed_in = await anyio.to_thread.run_sync(self.sessions.authenticate, token)
                exchange.via_session = True
                return signed_in
            record = self.keys.authenticate_cached(key)
            if record is None:
                record = await anyio.to_thread.run_sync(self.keys.authenticate, key)
            return record
        except KeyRejected as rejected:
            self._auth_failed(exchange, rejected.reason, rejected.message)
            raise GatewayError(
                ErrorCode.UNAUTHENTICATED, rejected.message, reason=rejected.reason
            ) from None
        except GatewayError as error:
            self._auth_failed(exchange, error.reason, error.message)
            raise
        except SQLAlchemyError as exc:
            log.error("auth store unreachable: %s", type(exc).__name__)
            raise GatewayError(
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                "The gateway cannot reach its auth store to check the API key. Retry shortly; "
                "operators: /ready names the failing dependency, `hokusai doctor --server` "
                "checks it.",
                headers={"Retry-After": "2"},
                reason="auth_store_unavailable",
            ) from None

    async def _signed_in(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        exchange: Exchange,
        *,
        page: bool,
        back_to: str,
    ) -> KeyRecord | None:
        """The caller's key (header or browser session, whose writes must be same-origin);
        None when the request was a person opening a ``page`` without a live session, who
        has been sent to sign in and then ``back_to`` it."""
        try:
            key = exchange.key = await self._authenticate(headers, exchange)
        except GatewayError as refused:
            if page and refused.error_code is ErrorCode.UNAUTHENTICATED:
                exchange.error_reason = refused.reason
                await login_redirect(back_to)(scope, receive, send)
                return None
            raise
        self._check_same_origin(scope, headers, exchange)
        return key

    def _refused(self, refusal: PermissionDenied) -> GatewayError:
        """Count a refusal by what refused it; its answer in the error format."""
        self.metrics.auth_failures.labels(refusal.reason).inc()
        return domain_answer(refusal)

    def _check_same_origin(
        self, scope: Scope, headers: dict[bytes, bytes], exchange: Exchange
    ) -> None:
        """A write authenticated by a session cookie must come from this site's pages: a
        cookie never authenticates another site's request (CSRF)."""
        if not exchange.via_session or scope["method"] in SAFE_METHODS:
            return
        if same_origin(headers, self._base_url(scope, headers)):
            return
        self.metrics.auth_failures.labels("cross_site").inc()
        raise GatewayError(
            ErrorCode.PERMISSION_DENIED,
            f"{scope['method']} {exchange.path} came with this site's session cookie from "
            "another origin (or without Origin and Referer): refused. Writes through a "
            "browser session must come from this site's own pages; scripts send their API "
            "key in a header.",
            reason="cross_site",
        )

    def _revoked(self, key_id: str) -> None:
        self.keys.forget(key_id)
        self.sessions.forget_key(key_id)

    def _sign_in_failed(self, reason: str, message: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()

    def _auth_failed(self, exchange: Exchange, reason: str, message: str) -> None:
        """Count a failure; past the limit, slow the address down (429) instead of 401."""
        self.metrics.auth_failures.labels(reason).inc()
        blocked = self.auth_failures.blocked_for(exchange.client)
        if blocked:
            self.metrics.rate_limited.labels("auth_failures").inc()
            raise GatewayError(
                ErrorCode.REQUEST_LIMIT_EXCEEDED,
                f"Too many failed authentications from {exchange.client} in the last minute; "
                f"this one: {message} Fix the API key (run `hokusai doctor`) and retry after "
                "the Retry-After delay.",
                headers=retry_after_header(blocked),
                reason="auth_failures_limited",
            )
        self.auth_failures.record_failure(exchange.client)

    def _authorize(
        self,
        method: str,
        mlflow_path: str,
        key: KeyRecord,
        scope: Scope,
        headers: dict[bytes, bytes],
        workspace: str,
    ) -> KeyScope:
        decision = classify(method, mlflow_path)
        route = decision.route
        if route is None:
            if decision.path_known:
                message = f"MLflow's {mlflow_path} does not accept {method}."
            elif mlflow_path.startswith(urlspace.MLFLOW_PREFIX + "/"):
                message = (
                    f"No MLflow endpoint {mlflow_path}: the tracking URI contains "
                    f"{urlspace.MLFLOW_PREFIX} twice. Set MLFLOW_TRACKING_URI="
                    f"{self._base_url(scope, headers)}{urlspace.MLFLOW_PREFIX}."
                )
            else:
                message = (
                    f"MLflow has no endpoint {mlflow_path} (or this gateway does not know it). "
                    f"The tracking URI is {self._base_url(scope, headers)}"
                    f"{urlspace.MLFLOW_PREFIX}; the MLflow client adds /api/2.0/mlflow/… itself."
                )
            raise GatewayError(ErrorCode.ENDPOINT_NOT_FOUND, message, reason="no_such_endpoint")
        if isinstance(route.access, Hidden):
            raise GatewayError(
                ErrorCode.ENDPOINT_NOT_FOUND,
                f"{method} {mlflow_path} is not exposed by this gateway: {route.access.reason}.",
                reason="not_exposed",
            )
        authorization.check_role(key, route.access, f"{method} {mlflow_path}", workspace)
        return route.access

    async def _workspace_settings(self, name: str) -> WorkspaceRecord | None:
        """A workspace's platform settings (protected aliases, the promotion gate)."""

        def read() -> WorkspaceRecord | None:
            with self.engine.connect() as conn:
                return workspace_store.get_workspace(conn, name=name)

        try:
            return await anyio.to_thread.run_sync(read)
        except SQLAlchemyError:
            raise GatewayError(
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                "The auth store is unavailable; nothing was changed, try again.",
                headers={"Retry-After": "1"},
                reason="auth_store_unavailable",
            ) from None

    async def _rate_limit(self, key: KeyRecord) -> None:
        wait = await self.key_limiter.acquire(key.id)
        if wait:
            self.metrics.rate_limited.labels("key").inc()
            raise GatewayError(
                ErrorCode.REQUEST_LIMIT_EXCEEDED,
                f"API key {key.id} is over its rate limit "
                f"({self.settings.rate_limit_per_second:g} requests/s). Retry after the "
                "Retry-After delay.",
                headers=retry_after_header(wait),
                reason="rate_limited",
            )

    # ---- local answers --------------------------------------------------------------

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """Each dependency with its status and latency; 503 when one fails."""
        checks = {
            "auth_store": await self._check(self._check_store),
            "mlflow": await self._check(self._check_mlflow),
            "dispatcher": await self._check(self._check_dispatch_lag),
        }
        ok = all(c["ok"] for c in checks.values())
        return (200 if ok else 503), {"status": "ok" if ok else "unavailable", "checks": checks}

    async def _check(self, probe: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            with anyio.fail_after(3):
                detail = await probe()
            ok = True
        except Exception as exc:  # a readiness probe reports every failure, whatever it is
            ok, detail = False, f"{type(exc).__name__}: {redact(str(exc))[:300]}"
        return {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 2), "detail": detail}

    async def _check_store(self) -> str:
        def probe() -> str:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return f"{self.engine.dialect.name} reachable"

        return await anyio.to_thread.run_sync(probe)

    async def _check_dispatch_lag(self) -> str:
        lag = await anyio.to_thread.run_sync(dispatch_lag_seconds, self.engine)
        self.metrics.dispatch_lag.set(lag)
        if lag > self.settings.max_dispatch_lag:
            raise RuntimeError(
                f"the oldest due webhook delivery has waited {lag:.0f} s: is a dispatcher "
                "running (hokusai serve, or hokusai worker)?"
            )
        return f"oldest due delivery waited {lag:.1f} s"

    async def _check_mlflow(self) -> str:
        # Callers of /ready are told how MLflow is doing, never where it is (the operator's
        # `hokusai doctor --server` names the URL).
        try:
            response = await self.proxy.client.get(
                self.proxy.upstream_url + "/health", timeout=httpx.Timeout(2.0)
            )
        except httpx.TimeoutException:
            raise RuntimeError("MLflow did not answer its health check within 2 s") from None
        except httpx.HTTPError as exc:
            raise RuntimeError(f"MLflow is not reachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise RuntimeError(f"MLflow's health check answered {response.status_code}")
        # Every request names its key's workspace: an MLflow without workspaces refuses them
        # all (FEATURE_DISABLED), so it is not ready, and says why.
        try:
            info = await self.proxy.client.get(
                self.proxy.upstream_url + "/api/3.0/mlflow/server-info",
                timeout=httpx.Timeout(2.0),
            )
            enabled = info.status_code == 200 and bool(info.json().get("workspaces_enabled"))
        except (httpx.HTTPError, ValueError, AttributeError):
            enabled = False
        if not enabled:
            raise RuntimeError(
                "MLflow runs without workspaces: start it with --enable-workspaces (each "
                "team is one of its workspaces)"
            )
        return "MLflow answered its health check, with workspaces"

    # ---- helpers ------------------------------------------------------------------------

    def _client_address(self, scope: Scope) -> str:
        client = scope.get("client")
        return client_address.client_address(
            str(client[0]) if client else None,
            scope["headers"],
            self.settings.trusted_proxy_networks,
        )

    def _base_url(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        """The URL the client reached the gateway by, for the hints in error messages."""
        client = scope.get("client")
        forwarded_scheme, forwarded_host = client_address.forwarded_scheme_and_host(
            str(client[0]) if client else None,
            scope["headers"],
            self.settings.trusted_proxy_networks,
        )
        scheme = forwarded_scheme or scope.get("scheme", "http")
        host = forwarded_host or headers.get(b"host", b"").decode("latin-1")
        if not client_address.valid_host(host) and scope.get("server"):
            host = "{}:{}".format(*scope["server"])
        return f"{scheme}://{host}"

    def _observe(self, exchange: Exchange) -> None:
        elapsed = time.perf_counter() - exchange.started_at
        status = exchange.status or 499  # the client went away before any answer
        workspace = (exchange.key.workspace or "platform") if exchange.key else ""
        self.metrics.requests.labels(
            exchange.route_class, exchange.method, str(status), workspace
        ).inc()
        self.metrics.latency.labels(exchange.route_class).observe(elapsed)
        if exchange.upstream_seconds is not None:
            self.metrics.upstream_latency.labels(exchange.route_class).observe(
                exchange.upstream_seconds
            )
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": exchange.request_id,
                        "method": exchange.method,
                        "path": redact(exchange.path),
                        "status": status,
                        "route_class": exchange.route_class,
                        "key_id": exchange.key.id if exchange.key else None,
                        "client": exchange.client,
                        "latency_ms": round(elapsed * 1000, 2),
                        "upstream_ms": round(exchange.upstream_seconds * 1000, 2)
                        if exchange.upstream_seconds is not None
                        else None,
                        "error": exchange.error_reason,
                    }
                },
            )


_ALL_WORKSPACES = "*"  # not a workspace name (MLflow's names are [a-z0-9-])
_WORKSPACES_PATH = "/api/3.0/mlflow/workspaces"


def _workspace_read(mlflow_path: str) -> str | None:
    """For a read of MLflow's workspaces: ``_ALL_WORKSPACES`` for the list, the name for
    one workspace; None for any other path."""
    path = api_path(mlflow_path)
    if path == _WORKSPACES_PATH:
        return _ALL_WORKSPACES
    if path.startswith(_WORKSPACES_PATH + "/") and "/" not in path[len(_WORKSPACES_PATH) + 1 :]:
        return path[len(_WORKSPACES_PATH) + 1 :]
    return None


def _wants_page(headers: dict[bytes, bytes]) -> bool:
    """Whether the request is a browser navigating (it accepts HTML), not an API call."""
    return b"text/html" in headers.get(b"accept", b"")


def _header_text(value: bytes | None) -> str | None:
    """A header's value as MLflow reads it (trimmed; empty is none)."""
    if value is None:
        return None
    return value.decode("latin-1").strip() or None


async def _send_cached(send: Send, answer: CachedAnswer) -> None:
    """MLflow's answer as it was given; the gateway's own headers are added on the way."""
    await send(
        {"type": "http.response.start", "status": answer.status, "headers": list(answer.headers)}
    )
    await send({"type": "http.response.body", "body": answer.body})


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _send_bytes(send, status, json.dumps(body).encode(), b"application/json")


async def _send_bytes(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app() -> Gateway:
    """Factory for ``uvicorn --factory hokusai.gateway.app:create_app``."""
    from hokusai.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    return Gateway(settings)
