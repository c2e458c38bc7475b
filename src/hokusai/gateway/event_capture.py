"""From a successful registry write to events in the outbox, before the client's answer.

Runs only for the few registry endpoints that produce events (``events.CAPTURED``);
every other request streams through untouched. The events belong to the workspace the
request acted in, so only that workspace's endpoints receive them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import httpx
from sqlalchemy import Engine

from hokusai.tokens import TOKEN_TAGS
from hokusai.webhooks import events as ev
from hokusai.webhooks.outbox import emit
from hokusai.workspaces.records import WORKSPACE_HEADER

log = logging.getLogger("hokusai.gateway.events")

# MLflow's workspace header: a read made for an event must look in the write's workspace.


class EventCapture:
    def __init__(self, engine: Engine, upstream_url: str, metrics: Any) -> None:
        self.engine = engine
        self.upstream_url = upstream_url.rstrip("/")
        self.metrics = metrics

    async def record(
        self,
        endpoint: str,
        method: str,
        query_string: bytes,
        key_id: str,
        status: int,
        request_body: bytes,
        response_body: bytes,
        client: httpx.AsyncClient,
        *,
        workspace: str,
        owner: str | None = None,
        version: dict[str, Any] | None = None,
    ) -> None:
        """``version``: the version an alias write names, when the gateway read it before
        the write (for a protected alias); else it is read here, once."""
        if not 200 <= status < 300:
            return
        request = ev.request_fields(request_body, query_string)
        try:
            response = json.loads(response_body) if response_body else {}
        except ValueError:
            response = {}
        current = None
        if endpoint == "model-versions/set-tag" and request.get("key") in TOKEN_TAGS:
            current = await self._current_version(client, request, workspace)
        elif endpoint == "registered-models/alias" and method == "POST":
            # Its event names what the version is: its manifest digest and signer.
            current = version or await self._current_version(client, request, workspace)
        found = ev.events_for_write(
            endpoint, method, request, response, key_id, current, workspace=workspace, owner=owner
        )
        if not found:
            return
        # The answer waits for this write: an answered registry write always has its
        # events. A failure here is logged and left to the reconciler.
        try:
            stored = await anyio.to_thread.run_sync(emit, self.engine, found)
        except Exception:
            log.exception("could not write events to the outbox; the reconciler will")
            return
        for event in stored:
            self.metrics.events_emitted.labels(event.type, event.workspace).inc()

    async def _current_version(
        self, client: httpx.AsyncClient, request: dict[str, Any], workspace: str
    ) -> dict[str, Any] | None:
        try:
            answer = await client.get(
                self.upstream_url + "/api/2.0/mlflow/model-versions/get",
                params={"name": request.get("name"), "version": request.get("version")},
                headers={WORKSPACE_HEADER: workspace},
            )
            answer.raise_for_status()
            return dict(answer.json()["model_version"])
        except (httpx.HTTPError, ValueError, KeyError):
            log.warning("could not read the version a write named, for its event")
            return None
