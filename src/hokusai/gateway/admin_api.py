"""The Hokusai API under ``/api/v1``: whoami, keys, key validation and the audit log.

The gateway has already authenticated the caller (``request.state.key``) before a
route here runs; routes state what more they need as dependencies.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException

from hokusai.db.timestamps import utcnow
from hokusai.gateway.api_docs import documented_api
from hokusai.gateway.audit import AuditEntry
from hokusai.gateway.errors import GatewayError, error_body
from hokusai.keys.scopes import Scope
from hokusai.keys.service import AmbiguousKeyReference, KeyNotFound, KeyRejected
from hokusai.keys.store import KeyRecord
from hokusai.version import __version__

if TYPE_CHECKING:
    from hokusai.gateway.app import Gateway

_DURATION = re.compile(r"^(\d{1,12})([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The longest duration accepted anywhere (key lifetimes, --since, gc ages): ten years.
# Beyond it, "now + duration" stops being a date the stores and Python can hold.
MAX_DURATION = timedelta(days=3650)
# The times a store can compare against once in UTC.
EARLIEST_TIME = datetime(1, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 31, tzinfo=UTC)


class DurationOutOfRange(ValueError):
    """A well-formed duration longer than :data:`MAX_DURATION`."""


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` -> timedelta, from 1 s to 3650 d."""
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(
            f"{text!r} is not a duration: use a positive number and a unit, e.g. 30d, 12h, 90m"
        )
    number, unit = int(match[1]), _UNITS[match[2]]
    if MAX_DURATION // timedelta(**{unit: 1}) < number:
        raise DurationOutOfRange(
            f"{text!r} is out of range: a duration is between 1s and {MAX_DURATION.days}d "
            "(ten years)"
        )
    return timedelta(**{unit: number})


def time_in_range(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC), or ValueError naming the range accepted."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST_TIME <= in_utc <= LATEST_TIME:
        raise ValueError(
            f"{value.isoformat()} is out of range: a time is between "
            f"{_utc_text(EARLIEST_TIME)} and {_utc_text(LATEST_TIME)} in UTC"
        )
    return in_utc


def _utc_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")  # strftime drops year 1's zeros


# A time given in a query or body, checked where it is parsed.
Since = Annotated[datetime, AfterValidator(time_in_range)]


class CreateKey(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: Scope = Scope.WRITE
    owner: str | None = Field(default=None, max_length=200)
    expires_in: str | None = Field(default=None, description="e.g. 30d, 12h; omit: no expiry")
    env: str = Field(default="live", pattern="^(live|test)$")


class RotateKey(BaseModel):
    expires_in: str | None = Field(
        default=None,
        description="Lifetime of the replacement, e.g. 30d, 12h; omit: the original's "
        "lifetime (at least 1h), counted from now",
    )


class ValidateKey(BaseModel):
    key: str = Field(max_length=200)


def current_key(request: Request) -> KeyRecord:
    key: KeyRecord | None = request.state.key
    assert key is not None, "the gateway authenticates before any /api/v1 route"
    return key


CurrentKey = Annotated[KeyRecord, Depends(current_key)]


def admin_key(key: CurrentKey, request: Request) -> KeyRecord:
    if not key.scope.allows(Scope.ADMIN):
        audit_entry(request.app.state.gateway, request, key, "denied", 403)
        raise GatewayError(
            "PERMISSION_DENIED",
            f"{request.method} {request.url.path} needs the 'admin' scope; API key "
            f"{key.display_prefix}… ({key.id}) has '{key.scope.value}'.",
            reason="scope",
        )
    return key


AdminKey = Annotated[KeyRecord, Depends(admin_key)]


def audit_entry(
    gateway: Gateway, request: Request, key: KeyRecord, action: str, status: int, **detail: Any
) -> None:
    """Record an admin action in the audit log."""
    gateway.audit.record(
        AuditEntry(
            request_id=request.state.request_id,
            key_id=key.id,
            owner=key.owner,
            action=action,
            method=request.method,
            path=request.url.path,
            status=status,
            client=request.state.client,
            detail=detail or None,
        )
    )


def build_admin_api(gateway: Gateway) -> FastAPI:
    api = documented_api("Hokusai API", __version__)

    def resolve(reference: str) -> KeyRecord:
        try:
            return gateway.keys.resolve(reference)
        except KeyNotFound as exc:
            raise GatewayError("RESOURCE_DOES_NOT_EXIST", str(exc)) from None
        except AmbiguousKeyReference as exc:
            raise GatewayError("INVALID_PARAMETER_VALUE", str(exc)) from None

    @api.get("/api/v1/whoami", summary="The calling key: id, owner, scope and state")
    def whoami(key: CurrentKey) -> dict[str, Any]:
        return key.public(utcnow())

    @api.get("/api/v1/keys", summary="List keys (admin)")
    def list_keys(_: AdminKey, include_revoked: bool = False) -> dict[str, Any]:
        now = utcnow()
        return {"keys": [k.public(now) for k in gateway.keys.list(include_revoked=include_revoked)]}

    @api.post("/api/v1/keys", status_code=201, summary="Create a key (admin); shown once")
    def create_key(body: CreateKey, key: AdminKey, request: Request) -> dict[str, Any]:
        try:
            expires_in = parse_duration(body.expires_in) if body.expires_in else None
            issued = gateway.keys.create(
                name=body.name,
                owner=body.owner or key.owner,
                scope=body.scope,
                env=body.env,
                expires_in=expires_in,
            )
        except ValueError as exc:
            raise GatewayError("INVALID_PARAMETER_VALUE", str(exc)) from None
        audit_entry(
            gateway,
            request,
            key,
            "keys.create",
            201,
            created=issued.record.id,
            scope=body.scope.value,
        )
        return {"key": issued.key, "record": issued.record.public(utcnow())}

    @api.get("/api/v1/keys/{reference}", summary="One key by id or display prefix (admin)")
    def get_key(reference: str, _: AdminKey) -> dict[str, Any]:
        return resolve(reference).public(utcnow())

    @api.post("/api/v1/keys/{reference}/revoke", summary="Revoke a key (admin)")
    def revoke_key(reference: str, key: AdminKey, request: Request) -> dict[str, Any]:
        target = resolve(reference)
        record = gateway.keys.revoke(target.id)
        audit_entry(gateway, request, key, "keys.revoke", 200, revoked=record.id)
        return record.public(utcnow())

    @api.post(
        "/api/v1/keys/{reference}/rotate", summary="Replace a key (admin); new key shown once"
    )
    def rotate_key(
        reference: str, key: AdminKey, request: Request, body: RotateKey | None = None
    ) -> dict[str, Any]:
        target = resolve(reference)
        try:
            lifetime = parse_duration(body.expires_in) if body and body.expires_in else None
            issued = gateway.keys.rotate(target.id, expires_in=lifetime)
        except ValueError as exc:
            raise GatewayError("INVALID_PARAMETER_VALUE", str(exc)) from None
        audit_entry(
            gateway,
            request,
            key,
            "keys.rotate",
            200,
            rotated=target.id,
            replacement=issued.record.id,
        )
        return {"key": issued.key, "record": issued.record.public(utcnow())}

    @api.post(
        "/api/v1/keys/validate",
        summary="Check a key another service was handed; never echoes the key",
    )
    def validate_key(body: ValidateKey, _: CurrentKey) -> dict[str, Any]:
        try:
            record = gateway.keys.authenticate(body.key)
        except KeyRejected as rejected:
            answer: dict[str, Any] = {
                "valid": False,
                "reason": rejected.reason,
                "message": rejected.message,
            }
            if rejected.record is not None:
                answer.update(_identity(rejected.record))
            return answer
        return {"valid": True, "reason": None, **_identity(record)}

    @api.get("/api/v1/audit", summary="The audit log, newest first (admin)")
    def read_audit(
        _: AdminKey,
        key_id: str | None = None,
        since: Since | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        return {"entries": gateway.audit.read(key_id=key_id, since=since, limit=limit)}

    api.state.gateway = gateway
    from hokusai.gateway.webhooks_api import build_webhooks_router

    api.include_router(build_webhooks_router(gateway))
    _install_error_handlers(api)
    return api


def _identity(record: KeyRecord) -> dict[str, Any]:
    public = record.public(utcnow())
    return {
        k: public[k]
        for k in ("id", "display_prefix", "owner", "scope", "env", "state", "expires_at")
    }


def _install_error_handlers(api: FastAPI) -> None:
    """FastAPI's default ``{"detail": ...}`` bodies must never reach a client."""

    def respond(request: Request, error: GatewayError) -> Response:
        return Response(
            error_body(error.error_code, error.message, request.state.request_id),
            status_code=error.status,
            headers=error.headers,
            media_type="application/json",
        )

    @api.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        return respond(request, exc)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return respond(
            request, GatewayError("INVALID_PARAMETER_VALUE", f"Invalid request: {problems}")
        )

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer; the gateway logs it once, with the id.
        request_id = request.state.request_id
        return respond(
            request,
            GatewayError(
                "INTERNAL_ERROR",
                f"The Hokusai API failed unexpectedly (request id {request_id}); the "
                "operator's log has the details under that id.",
            ),
        )

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            path = request.url.path
            hint = (
                f" Paths of the Hokusai API have no trailing slash: {path.rstrip('/')}."
                if path.endswith("/") and path != "/"
                else ""
            )
            error = GatewayError(
                "ENDPOINT_NOT_FOUND",
                f"No endpoint {request.method} {path} in the Hokusai API; see /docs.{hint}",
            )
        elif exc.status_code == 405:
            error = GatewayError(
                "ENDPOINT_NOT_FOUND",
                f"{request.url.path} does not accept {request.method}; see /docs.",
                status=405,
            )
        else:
            error = GatewayError("BAD_REQUEST", str(exc.detail), status=exc.status_code)
        return respond(request, error)
