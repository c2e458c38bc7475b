"""The gateway: one ASGI application in front of MLflow.

Every request passes the same steps, in this order (docs/architecture.md, "Gateway"):
request id -> canonical path -> no key in the URL -> locate in the URL space ->
authenticate (``authentication``) -> route policy (``policy``, ``hokusai.authorization``)
-> rate limit -> the MLflow route (``mlflow_route``: artifact cache, resolution cache or
proxy, audit) or a local answer -> metrics and one JSON log line. Pure ASGI, no buffering
middleware: bodies stream.

This module is longer than most (about 700 lines) because it is that order: each step is
a call to the module that does it, and the whole path of a request reads here top to
bottom, including how each kind of failure is answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import RedirectResponse
from starlette.types import Message, Receive, Scope, Send

from hokusai import authorization
from hokusai.admin.services import build_services
from hokusai.db.engine import make_engine
from hokusai.errors import ErrorCode, PermissionDenied
from hokusai.gateway import client_address, credentials, registry_changes, urlspace
from hokusai.gateway.admin_api import build_admin_api
from hokusai.gateway.artifact_cache import ArtifactCache
from hokusai.gateway.audit import AuditEntry, AuditLog
from hokusai.gateway.authentication import Authentication
from hokusai.gateway.body import (
    ClientDisconnected,
)
from hokusai.gateway.console import Console
from hokusai.gateway.errors import (
    GatewayError,
    domain_answer,
    send_error,
    unformatted_server_error,
)
from hokusai.gateway.event_capture import EventCapture
from hokusai.gateway.exchange import Exchange
from hokusai.gateway.frozen_artifacts import FrozenArtifacts
from hokusai.gateway.limits import InFlightLimit, per_key_limit
from hokusai.gateway.manifest_maker import ManifestMaker
from hokusai.gateway.mlflow_probe import MlflowProbe
from hokusai.gateway.mlflow_route import MlflowRoute
from hokusai.gateway.observability import Metrics, access_log, route_class
from hokusai.gateway.policy import Hidden, classify
from hokusai.gateway.proxy import MlflowProxy, UpstreamError
from hokusai.gateway.ratelimit import FailureWindow, key_limiter, retry_after_header
from hokusai.gateway.readiness import ReadinessChecks
from hokusai.gateway.registry_changes import ChangeFollower
from hokusai.gateway.registry_guard import RegistryGuard
from hokusai.gateway.resolution_cache import (
    ResolutionCache,
    api_path,
)
from hokusai.gateway.sessions import Sessions
from hokusai.gateway.signin import SignIn
from hokusai.gateway.sso import SingleSignOn
from hokusai.gateway.urlspace import Area
from hokusai.gateway.write_queue import WriteQueue
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope as KeyScope
from hokusai.keys.service import KeyService
from hokusai.logs import redact
from hokusai.settings import Settings
from hokusai.version import __version__
from hokusai.webhooks.outbox import dispatch_lag_seconds
from hokusai.webhooks.worker import run_background
from hokusai.workspaces import store as workspace_store
from hokusai.workspaces.records import WORKSPACE_HEADER, TrustedKeyRecord, WorkspaceRecord

T = TypeVar("T")

log = logging.getLogger("hokusai.gateway")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# MLflow's workspace header, as ASGI hands header names (lower case).
_WORKSPACE_HEADER = WORKSPACE_HEADER.lower().encode()


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
        self.ready_checks = ReadinessChecks(
            self.engine,
            self.proxy.client,
            settings.mlflow_url,
            self.metrics,
            settings.max_dispatch_lag,
        )
        self.mlflow_probe = MlflowProbe(self.proxy.client, settings.mlflow_url)
        self.registry_guard = RegistryGuard(
            self.mlflow_probe, self._workspace_settings, self._trusted_keys
        )
        self.frozen_artifacts = FrozenArtifacts(self.mlflow_probe)
        self.manifest_maker = ManifestMaker(
            self.engine, self.proxy.client, settings.mlflow_url, self.mlflow_probe
        )
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

        self.authentication = Authentication(
            self.keys, self.sessions, self.auth_failures, self.metrics, self._base_url
        )
        self.mlflow_route = MlflowRoute(
            settings,
            engine=self.engine,
            metrics=self.metrics,
            proxy=self.proxy,
            audit=self.audit,
            events=self.events,
            in_flight=self.in_flight,
            writes=self.writes,
            registry_guard=self.registry_guard,
            frozen_artifacts=self.frozen_artifacts,
            manifest_maker=self.manifest_maker,
            artifact_cache=self.artifact_cache,
            resolution_cache=self.resolution_cache,
            origin=self.origin,
            refused=self._refused,
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
                exchange.key = await self.authentication.authenticate(headers, exchange)
                self.authentication.check_same_origin(scope, headers, exchange)
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
        key = await self.authentication.signed_in(
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
        key = await self.authentication.signed_in(
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

        await self.mlflow_route.forward(
            scope,
            receive,
            send,
            exchange,
            key,
            workspace,
            access,
            mlflow_path,
            raw_mlflow_path,
        )

    def _refused(self, refusal: PermissionDenied) -> GatewayError:
        """Count a refusal by what refused it; its answer in the error format."""
        self.metrics.auth_failures.labels(refusal.reason).inc()
        return domain_answer(refusal)

    def _revoked(self, key_id: str) -> None:
        self.keys.forget(key_id)
        self.sessions.forget_key(key_id)

    def _sign_in_failed(self, reason: str, message: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()

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

        return await self._read_store(read)

    async def _trusted_keys(self, name: str) -> list[TrustedKeyRecord]:
        """The public keys a workspace trusts to sign its versions."""

        def read() -> list[TrustedKeyRecord]:
            with self.engine.connect() as conn:
                return workspace_store.list_trusted_keys(conn, workspace=name)

        return await self._read_store(read)

    async def _read_store(self, read: Callable[[], T]) -> T:
        """``read`` on a worker thread; an unavailable store refuses the request."""
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

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        return await self.ready_checks.run()

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
