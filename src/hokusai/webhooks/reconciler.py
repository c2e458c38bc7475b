"""The reconciler: registry changes that have no event get one, once.

A crash between MLflow's commit and the gateway's outbox write, or a write made
straight to MLflow, leaves a change without an event. The reconciler compares MLflow's
registry with the outbox and emits what is missing: creations of models and versions
(with their token events) and deletions of versions. Changes younger than a grace
period are left to the gateway, which is about to record them itself.

MLflow answers for one workspace at a time (the ``X-MLflow-Workspace`` header), so a
pass walks every workspace of the ``workspaces`` table, and tags what it finds with the
workspace it was found in. A workspace MLflow cannot list this time is skipped whole:
none of its versions is taken for deleted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from sqlalchemy import Engine, select

from hokusai.db.schema import events
from hokusai.webhooks import events as ev
from hokusai.webhooks.outbox import emit
from hokusai.workspaces.records import WORKSPACE_HEADER
from hokusai.workspaces.store import list_workspaces

log = logging.getLogger("hokusai.webhooks.reconciler")

GRACE_SECONDS = 10.0
MAX_PAGES = 10_000


def _pages(
    client: httpx.Client, path: str, key: str, params: dict[str, Any], workspace: str
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = None
    for _ in range(MAX_PAGES):
        response = client.get(
            path,
            params={**params, **({"page_token": token} if token else {})},
            headers={WORKSPACE_HEADER: workspace},
        )
        response.raise_for_status()
        body = response.json()
        found += body.get(key, [])
        token = body.get("next_page_token")
        if not token:
            break
    return found


def reconcile(
    engine: Engine, mlflow_url: str, *, grace_seconds: float = GRACE_SECONDS
) -> list[ev.Event]:
    """One pass over every workspace; the events it emitted."""
    # Read the outbox first: an event recorded after this point belongs to a change the
    # MLflow listing below also sees, so no live version is ever taken for deleted.
    with engine.connect() as conn:
        recorded = conn.execute(
            select(
                events.c.type,
                events.c.model_name,
                events.c.model_version,
                events.c.dedupe_key,
                events.c.seq,
                events.c.workspace,
            )
        ).all()
        names = [w.name for w in list_workspaces(conn)]
    known = {row.dedupe_key for row in recorded if row.dedupe_key}
    cutoff_ms = (time.time() - grace_seconds) * 1000
    missing: list[ev.Event] = []
    failed: list[str] = []
    with httpx.Client(base_url=mlflow_url.rstrip("/"), timeout=30.0) as client:
        for workspace in names:
            try:
                models, versions = _registry(client, workspace)
            except (httpx.HTTPError, ValueError) as exc:
                # Another workspace's changes still get their events this pass.
                log.warning("reconciler could not list workspace %r: %s", workspace, exc)
                failed.append(workspace)
                continue
            mine = [row for row in recorded if row.workspace == workspace]
            missing += _missing(workspace, models, versions, mine, known, cutoff_ms)
    stored = emit(engine, missing)
    if stored:
        log.info("reconciler emitted %d missing events", len(stored))
    if failed and len(failed) == len(names):
        raise RuntimeError(f"MLflow answered for no workspace ({', '.join(failed)})")
    return stored


def _registry(
    client: httpx.Client, workspace: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One workspace's registered models and model versions, as MLflow lists them."""
    models = _pages(
        client,
        "/api/2.0/mlflow/registered-models/search",
        "registered_models",
        {"max_results": 1000},
        workspace,
    )
    versions = _pages(
        client,
        "/api/2.0/mlflow/model-versions/search",
        "model_versions",
        {"max_results": 10000},
        workspace,
    )
    return models, versions


def _missing(
    workspace: str,
    models: list[dict[str, Any]],
    versions: list[dict[str, Any]],
    recorded: list[Any],  # the outbox rows of this workspace (Row)
    known: set[str],
    cutoff_ms: float,
) -> list[ev.Event]:
    """The events one workspace's registry calls for that the outbox does not hold."""
    missing: list[ev.Event] = []
    for model in models:
        if int(model.get("creation_timestamp", 0)) <= cutoff_ms:
            event = ev.model_created_event(model, None, "reconciler", workspace=workspace)
            if event.dedupe_key not in known:
                missing.append(event)
    live = set()
    for version in sorted(versions, key=lambda v: (v["name"], int(v["version"]))):
        live.add(
            ev.instance_key(
                ev.MODEL_VERSION_CREATED,
                version["name"],
                version["version"],
                version.get("creation_timestamp"),
                workspace=workspace,
            )
        )
        if int(version.get("creation_timestamp", 0)) > cutoff_ms:
            continue
        missing += [
            e
            for e in ev.version_created_events(version, None, "reconciler", workspace=workspace)
            if e.dedupe_key not in known
        ]
    # A version instance whose creation was recorded, that MLflow no longer has, and whose
    # deletion no later event records, was deleted without an event.
    last_deleted: dict[tuple[str, str], int] = {}
    for row in recorded:
        if row.type == ev.MODEL_VERSION_DELETED:
            key = (row.model_name, row.model_version)
            last_deleted[key] = max(last_deleted.get(key, 0), row.seq)
    for row in recorded:
        if row.type != ev.MODEL_VERSION_CREATED or row.dedupe_key in live or not row.dedupe_key:
            continue
        if last_deleted.get((row.model_name, row.model_version), 0) > row.seq:
            continue
        # The workspace prefix of a scoped key has no '.', so the type is the first match.
        deleted_key = row.dedupe_key.replace(ev.MODEL_VERSION_CREATED, ev.MODEL_VERSION_DELETED, 1)
        if deleted_key not in known:
            missing.append(
                ev.Event(
                    ev.MODEL_VERSION_DELETED,
                    {"name": row.model_name, "version": row.model_version},
                    source="reconciler",
                    dedupe_key=deleted_key,
                    workspace=workspace,
                )
            )
    return missing
