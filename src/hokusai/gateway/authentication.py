"""Who is asking: the caller's API key, from a header or a browser session.

A request is authenticated here (a verified key, or a live session made with one) or
refused with 401 in the error format; an address that keeps failing is slowed down
(429) instead. A write that a session cookie authenticates must come from this site's
own pages (CSRF). What the key may then do is decided in :mod:`hokusai.authorization`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Receive, Scope, Send

from hokusai.errors import ErrorCode
from hokusai.gateway import credentials
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.exchange import Exchange
from hokusai.gateway.observability import Metrics
from hokusai.gateway.proxy import SAFE_METHODS
from hokusai.gateway.ratelimit import FailureWindow, retry_after_header
from hokusai.gateway.sessions import Sessions, same_origin, session_token
from hokusai.gateway.signin import login_redirect
from hokusai.keys.records import KeyRecord
from hokusai.keys.service import KeyRejected, KeyService

log = logging.getLogger("hokusai.gateway")


class Authentication:
    """The checks of one gateway; ``base_url`` gives the URL a client reached it by."""

    def __init__(
        self,
        keys: KeyService,
        sessions: Sessions,
        failures: FailureWindow,
        metrics: Metrics,
        base_url: Callable[[Scope, dict[bytes, bytes]], str],
    ) -> None:
        self.keys = keys
        self.sessions = sessions
        self.auth_failures = failures
        self.metrics = metrics
        self._base_url = base_url

    async def authenticate(self, headers: dict[bytes, bytes], exchange: Exchange) -> KeyRecord:
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

    async def signed_in(
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
            key = exchange.key = await self.authenticate(headers, exchange)
        except GatewayError as refused:
            if page and refused.error_code is ErrorCode.UNAUTHENTICATED:
                exchange.error_reason = refused.reason
                await login_redirect(back_to)(scope, receive, send)
                return None
            raise
        self.check_same_origin(scope, headers, exchange)
        return key

    def check_same_origin(
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
