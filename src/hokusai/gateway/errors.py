"""The error format: every error the gateway itself produces, in one function.

MLflow's clients read ``{"error_code": ..., "message": ...}``; a body without
``message`` becomes ``INTERNAL_ERROR: Response: {...}`` on the client, which is the
unreadable error this platform exists to avoid. So every refusal, from any layer, is
built here, with the HTTP status MLflow itself maps to the code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Send

# MLflow's ErrorCode name -> HTTP status, as mlflow.protos.databricks_pb2 maps them.
STATUS_BY_ERROR_CODE: dict[str, int] = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "RESOURCE_ALREADY_EXISTS": 400,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class GatewayError(Exception):
    """A refusal the gateway answers itself, in MLflow's error format."""

    def __init__(
        self,
        error_code: str,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status or STATUS_BY_ERROR_CODE[error_code]
        self.headers = dict(headers or {})
        # A short machine-readable cause (e.g. "revoked"), for metrics and logs.
        self.reason = reason or error_code.lower()


def error_body(error_code: str, message: str, request_id: str | None) -> bytes:
    body: dict[str, str] = {"error_code": error_code, "message": message}
    if request_id:
        body["request_id"] = request_id
    return json.dumps(body).encode()


async def send_error(send: Send, error: GatewayError, request_id: str | None) -> None:
    """Answer ``error`` on a raw ASGI ``send``."""
    body = error_body(error.error_code, error.message, request_id)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
