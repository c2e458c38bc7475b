"""What the ``/api/v1`` routes take from the request: the deployment's services and the actor.

The gateway authenticates the caller before any route runs and puts its key in
``request.state.key``; the routers are module-level and get everything else from
``request.app.state`` (set once in :func:`hokusai.gateway.admin_api.build_admin_api`),
so neither imports the gateway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from pydantic import AfterValidator

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.services import AdminServices
from hokusai.durations import check_time
from hokusai.keys.records import KeyRecord


def services(request: Request) -> AdminServices:
    found: AdminServices = request.app.state.services
    return found


def current_key(request: Request) -> KeyRecord:
    key: KeyRecord | None = request.state.key
    assert key is not None, "the gateway authenticates before any /api/v1 route"
    return key


def current_actor(request: Request) -> Actor:
    """The calling key as the actor of a service operation, with the request it came in."""
    return Actor.for_key(
        current_key(request),
        Origin.http(
            request_id=request.state.request_id,
            method=request.method,
            path=request.url.path,
            client=request.state.client,
        ),
    )


Services = Annotated[AdminServices, Depends(services)]
CurrentKey = Annotated[KeyRecord, Depends(current_key)]
CurrentActor = Annotated[Actor, Depends(current_actor)]
# A time given in a query or body, checked where it is parsed (an InvalidInput is a
# ValueError, so pydantic reports it as the field's problem).
Since = Annotated[datetime, AfterValidator(check_time)]
