"""``/api/v1/webhooks``, ``/api/v1/deliveries``, ``/api/v1/events``: webhooks for admins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from hokusai.gateway.admin_api import AdminKey, Since, audit_entry
from hokusai.gateway.errors import GatewayError
from hokusai.webhooks import outbox
from hokusai.webhooks.dispatcher import send_test
from hokusai.webhooks.endpoints import EndpointError, EndpointNotFound, Endpoints
from hokusai.webhooks.signing import SecretBox
from hokusai.webhooks.worker import dispatcher_settings

if TYPE_CHECKING:
    from hokusai.gateway.app import Gateway


class AddEndpoint(BaseModel):
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list)
    model_filter: str | None = None
    description: str = Field(default="", max_length=1000)


class Replay(BaseModel):
    event_id: str | None = None
    since: Since | None = None
    endpoint_id: str | None = None


def build_webhooks_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    box = SecretBox(gateway.settings.resolved_secret)
    endpoints = Endpoints(gateway.engine, box, allow_private=gateway.settings.webhook_allow_private)

    def found(endpoint_id: str) -> dict[str, Any]:
        try:
            return endpoints.get(endpoint_id)
        except EndpointNotFound as exc:
            raise GatewayError("RESOURCE_DOES_NOT_EXIST", str(exc)) from None

    @router.post("/webhooks", status_code=201, summary="Add an endpoint; its secret is shown once")
    def add(body: AddEndpoint, key: AdminKey, request: Request) -> dict[str, Any]:
        try:
            created = endpoints.add(
                body.url,
                event_types=body.event_types,
                model_filter=body.model_filter,
                description=body.description,
            )
        except EndpointError as exc:
            raise GatewayError("INVALID_PARAMETER_VALUE", str(exc)) from None
        audit_entry(gateway, request, key, "webhooks.add", 201, endpoint=created.endpoint["id"])
        return {"endpoint": created.endpoint, "secret": created.secret}

    @router.get("/webhooks", summary="List endpoints")
    def list_endpoints(_: AdminKey) -> dict[str, Any]:
        return {"endpoints": endpoints.list()}

    @router.get("/webhooks/{endpoint_id}", summary="One endpoint")
    def get(endpoint_id: str, _: AdminKey) -> dict[str, Any]:
        return found(endpoint_id)

    @router.post("/webhooks/{endpoint_id}/disable", summary="Stop deliveries to an endpoint")
    def disable(endpoint_id: str, key: AdminKey, request: Request) -> dict[str, Any]:
        found(endpoint_id)
        audit_entry(gateway, request, key, "webhooks.disable", 200, endpoint=endpoint_id)
        return endpoints.set_enabled(endpoint_id, False)

    @router.post("/webhooks/{endpoint_id}/enable", summary="Resume deliveries to an endpoint")
    def enable(endpoint_id: str, key: AdminKey, request: Request) -> dict[str, Any]:
        found(endpoint_id)
        audit_entry(gateway, request, key, "webhooks.enable", 200, endpoint=endpoint_id)
        return endpoints.set_enabled(endpoint_id, True)

    @router.delete("/webhooks/{endpoint_id}", summary="Remove an endpoint")
    def remove(endpoint_id: str, key: AdminKey, request: Request) -> dict[str, Any]:
        found(endpoint_id)
        endpoints.remove(endpoint_id)
        audit_entry(gateway, request, key, "webhooks.remove", 200, endpoint=endpoint_id)
        return {"removed": endpoint_id}

    @router.post(
        "/webhooks/{endpoint_id}/rotate-secret",
        summary="New secret; the old one also signs for 24 h",
    )
    def rotate(endpoint_id: str, key: AdminKey, request: Request) -> dict[str, Any]:
        found(endpoint_id)
        rotated = endpoints.rotate_secret(endpoint_id)
        audit_entry(gateway, request, key, "webhooks.rotate_secret", 200, endpoint=endpoint_id)
        return {"endpoint": rotated.endpoint, "secret": rotated.secret}

    @router.post("/webhooks/{endpoint_id}/test", summary="Send a test event now; its outcome")
    async def test(endpoint_id: str, key: AdminKey) -> dict[str, Any]:
        await anyio.to_thread.run_sync(found, endpoint_id)
        # The attempt itself never raises (its failure is the answer); what is left is the
        # store, which answers 503 like every other store failure, never 500.
        try:
            return await send_test(
                gateway.engine, box, dispatcher_settings(gateway.settings), endpoint_id, key.id
            )
        except SQLAlchemyError as exc:
            raise GatewayError(
                "TEMPORARILY_UNAVAILABLE",
                f"The test delivery could not be recorded ({type(exc).__name__}); retry shortly.",
                headers={"Retry-After": "2"},
            ) from None

    @router.get("/deliveries", summary="Deliveries with their attempts, newest first")
    def deliveries(
        _: AdminKey,
        status: str | None = None,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        if status is not None and status not in outbox.DELIVERY_STATUSES:
            raise GatewayError(
                "INVALID_PARAMETER_VALUE",
                f"status must be one of {', '.join(outbox.DELIVERY_STATUSES)}",
            )
        return {
            "deliveries": outbox.list_deliveries(
                gateway.engine,
                status=status,
                endpoint_id=endpoint_id,
                event_id=event_id,
                limit=limit,
            )
        }

    @router.get("/events", summary="Registry events, newest first")
    def list_events(
        _: AdminKey, since: Since | None = None, model_name: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        return {
            "events": outbox.list_events(
                gateway.engine, since=since, model_name=model_name, limit=limit
            )
        }

    @router.post("/replay", summary="Deliver one event, or every event since a time, again")
    def replay(body: Replay, key: AdminKey, request: Request) -> dict[str, Any]:
        if bool(body.event_id) == bool(body.since):
            raise GatewayError("INVALID_PARAMETER_VALUE", "give exactly one of event_id or since")
        if body.endpoint_id:
            found(body.endpoint_id)
        try:
            queued = outbox.replay(
                gateway.engine,
                event_id=body.event_id,
                since=body.since,
                endpoint_id=body.endpoint_id,
            )
        except LookupError as exc:
            raise GatewayError("RESOURCE_DOES_NOT_EXIST", str(exc)) from None
        audit_entry(
            gateway, request, key, "webhooks.replay", 200, queued=queued, event_id=body.event_id
        )
        return {"queued": queued}

    return router
