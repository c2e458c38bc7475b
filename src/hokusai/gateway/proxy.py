"""The streaming proxy to MLflow.

An API call's body arrives here whole (read by gateway.body before any upstream
connection is taken); an artifact transfer's streams in chunks, and every answer
streams back, so a 1 GiB artifact passes in bounded memory. Upstream failures become
MLflow-format errors that say whether the request was sent: never sent (refused, no
pooled connection in time) -> 503 with ``Retry-After``; sent, outcome unknown (broken
connection -> 502, read timeout -> 504) -> for a write, ``x-should-retry: false``. API
calls get a short read timeout, artifact transfers the long one.

The proxied requests go through aiohttp: measured in bench/, it costs a tenth of the
CPU per request that httpx does in this pattern, which is most of the gateway's own
cost. Its cookie jar is a dummy (one user's cookie must never ride on another's
request) and it neither decompresses nor adds headers. The httpx client stays for the
gateway's own small calls to MLflow (readiness, event capture).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import httpx
import yarl
from starlette.types import Send

from hokusai.errors import ErrorCode
from hokusai.gateway.body import ClientDisconnected
from hokusai.gateway.errors import GatewayError
from hokusai.workspaces.records import WORKSPACE_HEADER

log = logging.getLogger("hokusai.gateway.proxy")

_WORKSPACE = WORKSPACE_HEADER.lower().encode()

# Hop-by-hop headers (RFC 9110 7.6.1) and what the gateway consumes or sets itself.
_DROP_REQUEST = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"authorization",
    b"x-api-key",
    b"cookie",
    # Set from the key's workspace, never taken from the client.
    _WORKSPACE,
    b"x-request-id",
    b"x-hokusai-key-id",
    b"x-hokusai-owner",
    # Claims about the client that MLflow must not take as the gateway's word.
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-server",
    b"x-real-ip",
}
_DROP_RESPONSE = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"set-cookie",
    # The gateway's server sets its own: a second Date would break RFC 9110.
    b"date",
    b"server",
}


@dataclass
class UpstreamResult:
    status: int
    upstream_seconds: float


# An API answer up to this size is read whole and sent in one piece.
SMALL_ANSWER_BYTES = 256 * 1024

# A request with one of these methods changes nothing: repeating it is always safe.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class UpstreamError(GatewayError):
    """MLflow gave no (complete) answer; ``kind`` is refused, timeout or protocol.

    ``sent`` tells the two cases a client must act on differently: a request never sent
    (refused, no pooled connection in time) may be retried; one that may have reached
    MLflow (the connection broke after sending, or the answer timed out) might have been
    applied, so a write is answered with ``x-should-retry: false``.
    """

    def __init__(
        self,
        kind: str,
        error_code: ErrorCode,
        message: str,
        *,
        sent: bool,
        method: str,
        status: int | None = None,
    ) -> None:
        headers = {}
        if not sent:
            headers["Retry-After"] = "1"
        elif method not in SAFE_METHODS:
            headers["x-should-retry"] = "false"
        super().__init__(
            error_code, message, status=status, headers=headers, reason=f"upstream_{kind}"
        )
        self.kind = kind
        self.sent = sent


class MlflowProxy:
    def __init__(
        self,
        upstream_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        api_timeout: float,
        pool_size: int,
    ) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout * 5
        )
        self._limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self._client: httpx.AsyncClient | None = None
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        # Waiting for a pooled connection counts as connecting: a full pool is "never sent".
        self._read_timeouts = {True: read_timeout, False: api_timeout}
        self._timeouts = {
            transfer: aiohttp.ClientTimeout(
                total=None,
                connect=self._timeout.pool,
                sock_connect=connect_timeout,
                sock_read=read,
            )
            for transfer, read in self._read_timeouts.items()
        }

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, limits=self._limits, follow_redirects=False
            )
        return self._client

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pool for proxied requests (made on first use, inside the event loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self._timeouts[False],
            )
        return self._session

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self,
        *,
        method: str,
        raw_mlflow_path: bytes,
        query_string: bytes,
        headers: list[tuple[bytes, bytes]],
        identity: tuple[str, str],
        workspace: str,
        request_id: str,
        body: bytes | AsyncIterator[bytes] | None,
        transfer: bool,
        send: Send,
        on_response_start: Callable[[int], Awaitable[None]],
        inspect: Callable[[int, bytes, bytes], Awaitable[None]] | None = None,
        keep: Callable[[int, list[tuple[bytes, bytes]], bytes], None] | None = None,
    ) -> UpstreamResult:
        """Send the request to MLflow and stream its answer back on ``send``.

        ``body`` is the whole request body of an API call, or the stream of an artifact
        transfer (``transfer``: also the long read timeout). ``on_response_start(status)``
        runs after MLflow answered and before the client sees the status line: the place
        for work that must precede the answer (audit). With ``inspect`` (the caller
        chooses it only for small registry writes, whose body is whole), the answer is
        kept too and ``inspect(status, request_body, response_body)`` runs before the
        answer: the place where events go into the outbox. With ``keep`` (chosen for the
        reads the resolution cache holds) the answer is read whole as well and
        ``keep(status, headers, body)`` sees exactly what the client is sent.
        """
        # The raw (still encoded) path, already checked canonical: MLflow sees exactly
        # the bytes the policy was decided on.
        url = self.upstream_url + raw_mlflow_path.decode("latin-1")
        if query_string:
            url += "?" + query_string.decode("latin-1")
        upstream_headers = [(k, v) for k, v in headers if k not in _DROP_REQUEST]
        whole = inspect is not None or keep is not None
        if whole:
            # An answer that is read (or served again) must be plain: no compression to undo.
            upstream_headers = [(k, v) for k, v in upstream_headers if k != b"accept-encoding"]
        upstream_headers += _gateway_headers(request_id, identity, workspace)
        started = time.perf_counter()
        try:
            response = await self.session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream_headers],
                data=body,
                allow_redirects=False,
                timeout=self._timeouts[transfer],
            )
        except (GatewayError, ClientDisconnected):
            raise  # the client's streamed body failed: its own error, not MLflow's
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, GatewayError | ClientDisconnected):
                raise exc.__cause__ from None
            raise self._failed(exc, method, transfer) from None
        except TimeoutError as exc:
            raise self._failed(exc, method, transfer) from None
        upstream_seconds = time.perf_counter() - started
        try:
            answer: bytes | None = None
            # A small API answer goes to the client in one piece: one read and one send
            # instead of a loop over the pieces aiohttp happens to receive.
            small = (
                not transfer
                and response.content_length is not None
                and response.content_length <= SMALL_ANSWER_BYTES
            )
            if whole or small:
                try:
                    answer = await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise self._failed(exc, method, transfer) from None
            if inspect is not None and answer is not None:
                await inspect(response.status, body if isinstance(body, bytes) else b"", answer)
            await on_response_start(response.status)
            out_headers = [
                (k.lower(), v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE
            ]
            if keep is not None and answer is not None:
                keep(response.status, list(out_headers), answer)
            await send(
                {"type": "http.response.start", "status": response.status, "headers": out_headers}
            )
            if answer is not None:
                await send({"type": "http.response.body", "body": answer, "more_body": False})
            else:
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.release()
        return UpstreamResult(response.status, upstream_seconds)

    @contextlib.asynccontextmanager
    async def download(
        self,
        *,
        raw_mlflow_path: bytes,
        identity: tuple[str, str],
        workspace: str,
        request_id: str,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """MLflow's answer to a plain ``GET`` of an artifact file, for the gateway itself
        to read (the artifact cache's fill): no client header is passed on."""
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in _gateway_headers(request_id, identity, workspace)
        ]
        url = yarl.URL(self.upstream_url + raw_mlflow_path.decode("latin-1"), encoded=True)
        try:
            response = await self.session.get(
                url, headers=headers, allow_redirects=False, timeout=self._timeouts[True]
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc, "GET", True) from None
        try:
            yield response
        finally:
            response.release()

    def _failed(self, exc: BaseException, method: str, transfer: bool) -> UpstreamError:
        """The error for a request MLflow did not answer, telling never-sent from sent."""
        # Connecting failed, or no pooled connection came in time: nothing was sent.
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            log.warning(
                "mlflow not reachable",
                extra={"fields": {"upstream": self.upstream_url, "error": type(exc).__name__}},
            )
            return UpstreamError(
                "refused",
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                f"The MLflow server behind this gateway is not reachable ({type(exc).__name__}):"
                " it is down or restarting. The request was not sent; retry in a moment. "
                "Operators: run `hokusai doctor --server`.",
                sent=False,
                method=method,
            )
        unknown = (
            ""
            if method in SAFE_METHODS
            else " The request may or may not have been applied: check before repeating it."
        )
        if isinstance(exc, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
            return UpstreamError(
                "timeout",
                ErrorCode.DEADLINE_EXCEEDED,
                f"MLflow did not answer within {self._read_timeouts[transfer]:g} s.{unknown}",
                sent=True,
                method=method,
            )
        log.warning(
            "mlflow connection broke",
            extra={"fields": {"upstream": self.upstream_url, "error": type(exc).__name__}},
        )
        return UpstreamError(
            "protocol",
            ErrorCode.TEMPORARILY_UNAVAILABLE,
            f"The connection to MLflow broke before it answered ({type(exc).__name__})."
            f"{unknown or ' Retry shortly.'}",
            sent=True,
            method=method,
            status=502,
        )


def _gateway_headers(
    request_id: str, identity: tuple[str, str], workspace: str
) -> list[tuple[bytes, bytes]]:
    """What the gateway tells MLflow about every request it sends: the request id, the
    key and its owner (for MLflow's logs), and the workspace the key acts in."""
    key_id, owner = identity
    return [
        (b"x-request-id", request_id.encode()),
        (b"x-hokusai-key-id", key_id.encode()),
        (b"x-hokusai-owner", quote(owner, safe="@.-_ ").encode()),
        (_WORKSPACE, workspace.encode("latin-1")),
    ]
