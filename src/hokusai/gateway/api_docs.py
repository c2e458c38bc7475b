"""The Hokusai API's own description at ``/docs``: offline, with its real authentication and
its real error answers.

- The Swagger UI's JavaScript and CSS come from the ``fastapi-offline`` package and are
  served by the gateway itself (``/docs/static/…``): the page works without the internet.
- The schema declares both ways to send a key, ``Authorization: Bearer`` and ``X-API-Key``,
  so the page has an Authorize button that works.
- Errors are documented as the gateway answers them: MLflow's format
  (``{"error_code", "message", "request_id"}``) with 400 for a bad request, never FastAPI's
  422 ``{"detail": …}``, which no client of this API ever sees.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from hokusai.errors import ErrorCode

DOCS_URL = "/docs"
OPENAPI_URL = "/api/v1/openapi.json"
STATIC_URL = "/docs/static"
# The page's paths are served without a key: hokusai.gateway.urlspace.DOCS_PATHS lists them.

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer hk_live_…`.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key in the `X-API-Key` header.",
    },
}

_ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every error answer, in MLflow's error format.",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "string", "enum": sorted(ErrorCode)},
        "message": {"type": "string", "description": "What happened and what to do."},
        "request_id": {
            "type": "string",
            "description": "Also in the X-Request-ID header and the gateway's log line.",
        },
    },
}

_ERROR_ANSWERS = {
    "400": "Invalid request (INVALID_PARAMETER_VALUE): a field is missing or malformed",
    "401": "No key, or a malformed, unknown, revoked or expired key (UNAUTHENTICATED)",
    "403": "The key's scope is too small (PERMISSION_DENIED)",
    "404": "No such resource (RESOURCE_DOES_NOT_EXIST) or endpoint (ENDPOINT_NOT_FOUND)",
    "429": "Over the key's rate limit (REQUEST_LIMIT_EXCEEDED), with Retry-After",
    "503": "The auth store is unavailable (TEMPORARILY_UNAVAILABLE), with Retry-After",
}


def documented_api(title: str, version: str) -> FastAPI:
    """A FastAPI app whose ``/docs`` page and OpenAPI schema describe the gateway as it is."""
    api = FastAPIOffline(
        title=title,
        version=version,
        docs_url=DOCS_URL,
        redoc_url=None,
        openapi_url=OPENAPI_URL,
        static_url=STATIC_URL,
        swagger_ui_parameters={"persistAuthorization": True},
        # A redirect to the slash-less path would build its Location from the Host header.
        redirect_slashes=False,
    )

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = _describe(
                get_openapi(title=api.title, version=api.version, routes=api.routes)
            )
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api


def _describe(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for fastapi_only in ("HTTPValidationError", "ValidationError"):
        schemas.pop(fastapi_only, None)
    schemas["Error"] = _ERROR_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{"bearer": []}, {"apiKey": []}]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _ERROR_ANSWERS.items():
                responses.setdefault(status, {"description": description, "content": error})
    return schema
