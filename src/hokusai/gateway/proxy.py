"""The streaming proxy to MLflow.

Bodies stream both ways in chunks, never buffered whole, so a 1 GiB artifact passes
in bounded memory. Upstream failures become MLflow-format errors: refused -> 503 with
``Retry-After``, timed out -> 504.

The proxied requests go through aiohttp: measured in bench/, it costs a tenth of the
CPU per request that httpx does in this pattern, which is most of the gateway's own
cost. Its cookie jar is a dummy (one user's cookie must never ride on another's
request) and it neither decompresses nor adds headers. The httpx client stays for the
gateway's own small calls to MLflow (readiness, event capture).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import httpx
import yarl
from starlette.types import Receive, Send

from hokusai.gateway.errors import GatewayError

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


class BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    pass


@dataclass
class UpstreamResult:
    status: int
    upstream_seconds: float


class UpstreamError(GatewayError):
    """The upstream did not answer; ``kind`` is refused, timeout or protocol."""

    def __init__(self, kind: str, error_code: str, message: str, retry_after: int | None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        super().__init__(error_code, message, headers=headers, reason=f"upstream_{kind}")
        self.kind = kind


class MlflowProxy:
    def __init__(
        self,
        upstream_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
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
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self._timeout.pool,  # waiting for a pooled connection included
                    sock_connect=self._timeout.connect,
                    sock_read=self._timeout.read,
                ),
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
        request_id: str,
        receive: Receive,
        send: Send,
        max_body: int,
        on_response_start: Callable[[int], Awaitable[None]],
        inspect: Callable[[int, bytes, bytes], Awaitable[None]] | None = None,
    ) -> UpstreamResult:
        """Send the request to MLflow and stream its answer back on ``send``.

        ``on_response_start(status)`` runs after MLflow answered and before the client
        sees the status line: the place for work that must precede the answer (audit).
        With ``inspect``, both bodies are kept (the caller chooses it only for small
        registry writes) and ``inspect(status, request_body, response_body)`` runs before
        the answer too: the place where events go into the outbox.
        """
        # The raw (still encoded) path, already checked canonical: MLflow sees exactly
        # the bytes the policy was decided on.
        url = self.upstream_url + raw_mlflow_path.decode("latin-1")
        if query_string:
            url += "?" + query_string.decode("latin-1")
        upstream_headers = [(k, v) for k, v in headers if k not in _DROP_REQUEST]
        if inspect is not None:
            # An answer that is read must be plain: no compression to undo.
            upstream_headers = [(k, v) for k, v in upstream_headers if k != b"accept-encoding"]
        key_id, owner = identity
        upstream_headers += [
            (b"x-request-id", request_id.encode()),
            (b"x-hokusai-key-id", key_id.encode()),
            (b"x-hokusai-owner", quote(owner, safe="@.-_ ").encode()),
        ]
        has_body = any(k == b"content-length" and v != b"0" for k, v in headers) or any(
            k == b"transfer-encoding" for k, _ in headers
        )
        sent_body: list[bytes] | None = [] if inspect is not None else None
        content = _stream_body(receive, max_body, sent_body) if has_body else None
        started = time.perf_counter()
        try:
            response = await self.session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream_headers],
                data=content,
                allow_redirects=False,
            )
        except BodyTooLarge:
            raise _too_large(max_body) from None
        except ClientDisconnected:
            raise
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable
            raise self._refused(exc) from None
        except aiohttp.ConnectionTimeoutError as exc:  # connect, or waiting for the pool
            raise self._refused(exc) from None
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise UpstreamError(
                "timeout",
                "DEADLINE_EXCEEDED",
                f"MLflow did not answer within {self._timeout.read:g} s. The request may or "
                "may not have been applied; check before retrying a write.",
                retry_after=None,
            ) from None
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, BodyTooLarge | ClientDisconnected):
                if isinstance(exc.__cause__, BodyTooLarge):
                    raise _too_large(max_body) from None
                raise exc.__cause__ from None
            raise UpstreamError(
                "protocol",
                "TEMPORARILY_UNAVAILABLE",
                f"The connection to MLflow broke ({type(exc).__name__}). Retry shortly.",
                retry_after=1,
            ) from None
        upstream_seconds = time.perf_counter() - started
        try:
            answer: bytes | None = None
            if inspect is not None:
                answer = await response.read()
                await inspect(response.status, b"".join(sent_body or []), answer)
            await on_response_start(response.status)
            out_headers = [
                (k.lower(), v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE
            ]
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

    def _refused(self, exc: Exception) -> UpstreamError:
        return UpstreamError(
            "refused",
            "TEMPORARILY_UNAVAILABLE",
            f"The MLflow server behind this gateway ({self.upstream_url}) is not reachable "
            f"({type(exc).__name__}): it is down or restarting. Retry in a moment; operators: "
            "run `hokusai doctor --server`.",
            retry_after=1,
        )


async def _stream_body(
    receive: Receive, max_body: int, keep: list[bytes] | None = None
) -> AsyncIterator[bytes]:
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        received += len(chunk)
        if max_body and received > max_body:
            raise BodyTooLarge()
        if chunk:
            if keep is not None:
                keep.append(chunk)
            yield chunk
        if not message.get("more_body", False):
            return


def _too_large(max_body: int) -> GatewayError:
    return GatewayError(
        "INVALID_PARAMETER_VALUE",
        f"The request body is larger than this gateway accepts ({max_body} bytes). "
        "Send less data per request, or ask the operator to raise the limit.",
        reason="body_too_large",
    )


def check_content_length(headers: list[tuple[bytes, bytes]], max_body: int) -> None:
    """Refuse a declared oversized body before reading any of it."""
    if not max_body:
        return
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise GatewayError(
                    "INVALID_PARAMETER_VALUE",
                    "The Content-Length header is not a number.",
                    reason="bad_request",
                ) from None
            if declared > max_body:
                raise _too_large(max_body)
