"""``/api/v1/webhooks``, ``/api/v1/deliveries``, ``/api/v1/events``: webhooks for admins.

Routes only parse: each calls one :class:`~hokusai.admin.webhooks.WebhookAdmin` operation
with the calling key as its actor and renders the typed record it returns. ``workspace``
(on add, and as a filter of the listings and replays) is for platform admin keys; a
workspace's key works in its own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hokusai.gateway.deps import CurrentActor, Services, Since
from hokusai.webhooks.records import EndpointSecret


class AddEndpoint(BaseModel):
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list)
    model_filter: str | None = None
    description: str = Field(default="", max_length=1000)
    workspace: str | None = Field(default=None, max_length=63)


class Replay(BaseModel):
    event_id: str | None = None
    since: Since | None = None
    endpoint_id: str | None = None
    workspace: str | None = Field(default=None, max_length=63)


router = APIRouter(prefix="/api/v1")


def secret_answer(created: EndpointSecret) -> dict[str, Any]:
    """An endpoint and its signing secret: the only answers that ever hold one."""
    return {"endpoint": created.endpoint.public(), "secret": created.secret}


@router.post("/webhooks", status_code=201, summary="Add an endpoint; its secret is shown once")
def add(body: AddEndpoint, services: Services, actor: CurrentActor) -> dict[str, Any]:
    created = services.webhooks.add(
        actor,
        body.url,
        event_types=body.event_types,
        model_filter=body.model_filter,
        description=body.description,
        workspace=body.workspace,
    )
    return secret_answer(created)


@router.get("/webhooks", summary="List endpoints")
def list_endpoints(
    services: Services, actor: CurrentActor, workspace: str | None = None
) -> dict[str, Any]:
    found = services.webhooks.list(actor, workspace=workspace)
    return {"endpoints": [e.public() for e in found]}


@router.get("/webhooks/{endpoint_id}", summary="One endpoint")
def get(endpoint_id: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.webhooks.get(actor, endpoint_id).public()


@router.post("/webhooks/{endpoint_id}/disable", summary="Stop deliveries to an endpoint")
def disable(endpoint_id: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.webhooks.disable(actor, endpoint_id).public()


@router.post("/webhooks/{endpoint_id}/enable", summary="Resume deliveries to an endpoint")
def enable(endpoint_id: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.webhooks.enable(actor, endpoint_id).public()


@router.delete("/webhooks/{endpoint_id}", summary="Remove an endpoint")
def remove(endpoint_id: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    removed = services.webhooks.remove(actor, endpoint_id)
    return {"removed": removed.id}


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    summary="New secret; the old one also signs for 24 h",
)
def rotate(endpoint_id: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return secret_answer(services.webhooks.rotate_secret(actor, endpoint_id))


@router.post("/webhooks/{endpoint_id}/test", summary="Send a test event now; its outcome")
async def test(endpoint_id: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    # The attempt never raises (its failure is the answer); a store failure is a 503.
    return (await services.webhooks.test(actor, endpoint_id)).public()


@router.get("/deliveries", summary="Deliveries with their attempts, newest first")
def deliveries(
    services: Services,
    actor: CurrentActor,
    status: str | None = None,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    workspace: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    found = services.webhooks.deliveries(
        actor,
        status=status,
        endpoint_id=endpoint_id,
        event_id=event_id,
        workspace=workspace,
        limit=limit,
    )
    return {"deliveries": [d.public() for d in found]}


@router.get("/events", summary="Registry events, newest first")
def list_events(
    services: Services,
    actor: CurrentActor,
    since: Since | None = None,
    model_name: str | None = None,
    workspace: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    found = services.webhooks.events(
        actor, since=since, model_name=model_name, workspace=workspace, limit=limit
    )
    return {"events": [e.public() for e in found]}


@router.post("/replay", summary="Deliver one event, or every event since a time, again")
def replay(body: Replay, services: Services, actor: CurrentActor) -> dict[str, Any]:
    queued = services.webhooks.replay(
        actor,
        event_id=body.event_id,
        since=body.since,
        endpoint_id=body.endpoint_id,
        workspace=body.workspace,
    )
    return {"queued": queued}
