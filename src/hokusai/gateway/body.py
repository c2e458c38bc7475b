"""Reading a client's request body, with a size bound and an idle timeout.

An API call's body (at most ``max_body_bytes``) is read whole before an upstream
connection is taken, so a client that sends slowly holds nothing but its own request.
Only artifact transfers stream their body to MLflow as it arrives. Either way, a client
that pauses longer than the idle timeout gets a 408 and the connection is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.types import Receive

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError


class ClientDisconnected(Exception):
    """The client went away before its request was read: nobody is left to answer."""


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"content-length" and v != b"0" for k, v in headers) or any(
        k == b"transfer-encoding" for k, _ in headers
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
                    ErrorCode.INVALID_PARAMETER_VALUE,
                    "The Content-Length header is not a number.",
                    reason="bad_request",
                ) from None
            if declared > max_body:
                raise too_large(max_body)


async def read_body(receive: Receive, max_body: int, idle_timeout: float) -> bytes:
    """The whole body, or an error once it exceeds ``max_body`` or stalls."""
    return b"".join([chunk async for chunk in stream_body(receive, max_body, idle_timeout)])


async def stream_body(receive: Receive, max_body: int, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body chunk by chunk as it arrives; ``max_body`` 0 means no bound."""
    received = 0
    while True:
        with anyio.move_on_after(idle_timeout) as waited:
            message = await receive()
        if waited.cancelled_caught:
            raise stalled(idle_timeout)
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        received += len(chunk)
        if max_body and received > max_body:
            raise too_large(max_body)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def too_large(max_body: int) -> GatewayError:
    return GatewayError(
        ErrorCode.INVALID_PARAMETER_VALUE,
        f"The request body is larger than this gateway accepts ({max_body} bytes). "
        "Send less data per request, or ask the operator to raise the limit.",
        reason="body_too_large",
    )


def stalled(idle_timeout: float) -> GatewayError:
    # 408: the request was never complete, so it never reached MLflow; sending it again
    # (at a normal pace) is safe. The rest of the body is unread: the connection must go.
    return GatewayError(
        ErrorCode.BAD_REQUEST,
        f"The request body stopped arriving: nothing came for {idle_timeout:g} s. The request "
        "was not applied; send the body at once.",
        status=408,
        headers={"Connection": "close"},
        reason="body_stalled",
    )
