"""The Hokusai API under ``/api/v1``: whoami, keys, key validation and the audit log
(webhooks and workspaces have routers of their own, included here).

Routes only parse: each calls one service operation (:mod:`hokusai.admin`) with the
calling key as its actor, and renders the typed record it returns. Who may do what, the
transaction and the audit row are the services'; a :class:`~hokusai.errors.DomainError`
becomes the MLflow error format in one handler (:func:`hokusai.gateway.errors.domain_answer`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from hokusai.admin.services import AdminServices
from hokusai.errors import DomainError, ErrorCode
from hokusai.gateway.api_docs import documented_api
from hokusai.gateway.deps import CurrentActor, CurrentKey, Services, Since
from hokusai.gateway.errors import GatewayError, domain_answer, error_body
from hokusai.gateway.webhooks_api import router as webhooks_router
from hokusai.gateway.workspaces_api import router as workspaces_router
from hokusai.keys.records import IssuedKey, KeyRecord
from hokusai.keys.scopes import Scope
from hokusai.timestamps import utcnow
from hokusai.version import __version__


class CreateKey(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: Scope = Scope.WRITE
    owner: str | None = Field(default=None, max_length=200)
    expires_in: str | None = Field(default=None, description="e.g. 30d, 12h; omit: no expiry")
    env: str = Field(default="live", pattern="^(live|test)$")
    workspace: str | None = Field(
        default=None,
        max_length=63,
        description="The workspace the key belongs to (default: the caller's, else 'default')",
    )
    models: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Model-name patterns ('*', '?') its registry writes are limited to",
    )
    platform: bool = Field(
        default=False,
        description="A platform admin key (scope admin, no workspace): acts in every workspace",
    )


class RotateKey(BaseModel):
    expires_in: str | None = Field(
        default=None,
        description="Lifetime of the replacement, e.g. 30d, 12h; omit: the original's "
        "lifetime (at least 1h), counted from now",
    )


class ValidateKey(BaseModel):
    key: str = Field(max_length=200)


router = APIRouter(prefix="/api/v1")


def issued_answer(issued: IssuedKey) -> dict[str, Any]:
    """A new key and its record: the only answer that ever holds a key."""
    return {"key": issued.key, "record": issued.record.public(utcnow())}


@router.get(
    "/whoami",
    summary="The calling key: id, owner, role, workspace, model patterns, state; its "
    "workspace's protected aliases and promotion gate; who can grant more",
)
def whoami(key: CurrentKey, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return {**key.public(utcnow()), **services.keys.access(actor).public()}


@router.get(
    "/whoami/denials",
    summary="The calling key's own most recent refusals, with what refused each",
)
def whoami_denials(
    services: Services, actor: CurrentActor, limit: int = Query(default=20, ge=1, le=100)
) -> dict[str, Any]:
    found = services.audit.denials(actor, limit=limit)
    return {"denials": [entry.public() for entry in found]}


@router.get("/keys", summary="List keys (admin; a workspace admin: its workspace's)")
def list_keys(
    services: Services,
    actor: CurrentActor,
    include_revoked: bool = False,
    workspace: str | None = None,
) -> dict[str, Any]:
    now = utcnow()
    found = services.keys.list(actor, include_revoked=include_revoked, workspace=workspace)
    return {"keys": [k.public(now) for k in found]}


@router.post("/keys", status_code=201, summary="Create a key (admin); shown once")
def create_key(body: CreateKey, services: Services, actor: CurrentActor) -> dict[str, Any]:
    issued = services.keys.create(
        actor,
        name=body.name,
        owner=body.owner,
        scope=body.scope,
        env=body.env,
        expires_in=body.expires_in or None,
        workspace=body.workspace or None,
        platform=body.platform,
        models=body.models,
    )
    return issued_answer(issued)


@router.post("/keys/validate", summary="Check a key another service was handed; never echoes it")
def validate_key(body: ValidateKey, services: Services, actor: CurrentActor) -> dict[str, Any]:
    check = services.keys.validate(actor, body.key)
    if check.valid:
        assert check.record is not None
        return {"valid": True, "reason": None, **_identity(check.record)}
    answer: dict[str, Any] = {"valid": False, "reason": check.reason, "message": check.message}
    if check.record is not None:
        answer.update(_identity(check.record))
    return answer


@router.get("/keys/{reference}", summary="One key by id or display prefix (admin)")
def get_key(reference: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.keys.get(actor, reference).public(utcnow())


@router.post("/keys/{reference}/revoke", summary="Revoke a key (admin)")
def revoke_key(reference: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.keys.revoke(actor, reference).public(utcnow())


@router.post("/keys/{reference}/rotate", summary="Replace a key (admin); new key shown once")
def rotate_key(
    reference: str, services: Services, actor: CurrentActor, body: RotateKey | None = None
) -> dict[str, Any]:
    expires_in = body.expires_in if body else None
    return issued_answer(services.keys.rotate(actor, reference, expires_in=expires_in))


@router.get(
    "/audit",
    summary="The audit log, newest first (admin; a workspace admin: its workspace's)",
)
def read_audit(
    services: Services,
    actor: CurrentActor,
    key_id: str | None = None,
    action: str | None = None,
    since: Since | None = None,
    limit: int = 100,
    workspace: str | None = None,
) -> dict[str, Any]:
    found = services.audit.query(
        actor, key_id=key_id, action=action, since=since, limit=limit, workspace=workspace
    )
    return {"entries": [entry.public() for entry in found]}


def _identity(record: KeyRecord) -> dict[str, Any]:
    public = record.public(utcnow())
    return {
        k: public[k]
        for k in (
            "id",
            "display_prefix",
            "owner",
            "scope",
            "env",
            "state",
            "expires_at",
            "workspace",
        )
    }


def build_admin_api(services: AdminServices) -> FastAPI:
    """The FastAPI app of ``/api/v1`` and ``/docs`` on one deployment's services."""
    api = documented_api("Hokusai API", __version__)
    api.state.services = services
    api.include_router(router)
    api.include_router(webhooks_router)
    api.include_router(workspaces_router)
    _install_error_handlers(api)
    return api


def _install_error_handlers(api: FastAPI) -> None:
    """FastAPI's default ``{"detail": ...}`` bodies must never reach a client."""

    def respond(request: Request, error: GatewayError) -> Response:
        return Response(
            error_body(error.error_code, error.message, request.state.request_id, error.details),
            status_code=error.status,
            headers=error.headers,
            media_type="application/json",
        )

    @api.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return respond(request, domain_answer(exc))

    @api.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        return respond(request, exc)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return respond(
            request,
            GatewayError(ErrorCode.INVALID_PARAMETER_VALUE, f"Invalid request: {problems}"),
        )

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer; the gateway logs it once, with the id.
        request_id = request.state.request_id
        return respond(
            request,
            GatewayError(
                ErrorCode.INTERNAL_ERROR,
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
                ErrorCode.ENDPOINT_NOT_FOUND,
                f"No endpoint {request.method} {path} in the Hokusai API; see /docs.{hint}",
            )
        elif exc.status_code == 405:
            error = GatewayError(
                ErrorCode.ENDPOINT_NOT_FOUND,
                f"{request.url.path} does not accept {request.method}; see /docs.",
                status=405,
            )
        else:
            error = GatewayError(ErrorCode.BAD_REQUEST, str(exc.detail), status=exc.status_code)
        return respond(request, error)
