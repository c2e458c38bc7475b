"""The error format: every error the gateway itself produces, in one function.

MLflow's clients read ``{"error_code": ..., "message": ...}``; a body without
``message`` becomes ``INTERNAL_ERROR: Response: {...}`` on the client, which is the
unreadable error this platform exists to avoid. So every refusal, from any layer, is
built here, with the HTTP status MLflow itself maps to the code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

from starlette.types import Send

from hokusai.errors import (
    HTTP_STATUS,
    DomainError,
    ErrorCode,
    PermissionDenied,
    RateLimited,
    http_status,
)

__all__ = ["HTTP_STATUS", "GatewayError", "domain_answer", "error_body", "send_error"]


class GatewayError(Exception):
    """A refusal the gateway answers itself, in MLflow's error format."""

    def __init__(
        self,
        error_code: ErrorCode,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status or http_status(self.error_code)
        self.headers = dict(headers or {})
        # A short machine-readable cause (e.g. "revoked"), for metrics and logs.
        self.reason = reason or self.error_code.lower()
        # Facts a client can act on (what refused a request, who can grant it), sent as
        # the body's ``details``; MLflow's clients read only the code and message.
        self.details = dict(details or {})


def domain_answer(error: DomainError) -> GatewayError:
    """How a service's :class:`DomainError` is answered over HTTP: the status its code maps
    to, and ``Retry-After`` (whole seconds, at least 1) for a rate limit."""
    headers = None
    if isinstance(error, RateLimited) and error.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    details = error.details if isinstance(error, PermissionDenied) else None
    return GatewayError(
        error.code, error.message, headers=headers, reason=error.reason, details=details
    )


def error_body(
    error_code: str,
    message: str,
    request_id: str | None,
    details: Mapping[str, object] | None = None,
) -> bytes:
    body: dict[str, object] = {"error_code": error_code, "message": message}
    if request_id:
        body["request_id"] = request_id
    if details:
        body["details"] = dict(details)
    return json.dumps(body).encode()


async def send_error(send: Send, error: GatewayError, request_id: str | None) -> None:
    """Answer ``error`` on a raw ASGI ``send``."""
    body = error_body(error.error_code, error.message, request_id, error.details)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _is_json(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


def unformatted_server_error(
    status: int, headers: Iterable[tuple[bytes, bytes]], request_id: str
) -> GatewayError | None:
    """The error to answer instead of a 5xx that is not JSON (an HTML page, plain text).

    Decided on the status line and headers alone, so nothing is buffered: a JSON error
    (MLflow's own format) and every non-5xx answer pass untouched.
    """
    if status < 500:
        return None
    content_type = b""
    retry_after = None
    for name, value in headers:
        name = name.lower()
        if name == b"content-type":
            content_type = value
        elif name == b"retry-after":
            retry_after = value.decode("latin-1")
    if _is_json(content_type):
        return None
    error_code = {
        503: ErrorCode.TEMPORARILY_UNAVAILABLE,
        504: ErrorCode.DEADLINE_EXCEEDED,
    }.get(status, ErrorCode.INTERNAL_ERROR)
    return GatewayError(
        error_code,
        f"The server failed with HTTP {status} (request id {request_id}); the operator's log "
        "has the details under that id.",
        status=status,
        headers={"Retry-After": retry_after} if retry_after else None,
        reason="unformatted_server_error",
    )
