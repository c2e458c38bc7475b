"""Webhooks stay inside their workspace: an endpoint receives only its workspace's events,
each event names its workspace, another team's endpoints are out of sight, and the
reconciler finds changes in every workspace.

Real MLflow (with workspaces), real gateways, real receivers on 127.0.0.1. The MLflow
server is shared by the whole session, so every test makes workspaces of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from standardwebhooks import Webhook

from hokusai.db.schema import webhook_endpoints
from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.timestamps import utcnow
from hokusai.webhooks.reconciler import reconcile
from hokusai.workspaces.records import DEFAULT_PROTECTED_ALIASES, WorkspaceRecord
from hokusai.workspaces.store import insert_workspace
from tests.helpers import MLFLOW_API, auth
from tests.webhooks.receiver import Receiver, Request
from tests.webhooks.support import Hooks, run_source, unique

pytestmark = pytest.mark.integration

WORKSPACE_HEADER = "X-MLflow-Workspace"


def verified_payloads(requests: list[Request], secret: str) -> list[dict[str, Any]]:
    """The payloads, each checked against the endpoint's signing secret."""
    webhook = Webhook(secret)
    return [webhook.verify(r.body, r.headers) for r in requests]


def make_workspace(hooks: Hooks, mlflow_url: str, prefix: str) -> str:
    """A workspace in the platform's table and in MLflow (a name of its own: the MLflow
    server outlives the test's store)."""
    name = unique(prefix)
    now = utcnow()
    record = WorkspaceRecord(name, "", DEFAULT_PROTECTED_ALIASES, False, now, now)
    with hooks.engine.begin() as conn:
        insert_workspace(conn, record=record)
    created = httpx.post(mlflow_url + "/api/3.0/mlflow/workspaces", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    return name


@dataclass
class Team:
    """A workspace with an admin key and a write key of its own, through the gateway."""

    workspace: str
    admin: httpx.Client
    writer: httpx.Client

    def add_endpoint(self, url: str) -> tuple[dict[str, Any], str]:
        response = self.admin.post("/api/v1/webhooks", json={"url": url})
        assert response.status_code == 201, response.text
        return response.json()["endpoint"], response.json()["secret"]

    def mlflow(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        # Sent along until the gateway sets it from the key; a key's own workspace is
        # always accepted.
        headers = {WORKSPACE_HEADER: self.workspace}
        response = self.writer.request(method, MLFLOW_API + endpoint, headers=headers, **kwargs)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.mlflow("POST", endpoint, json=body)


def team(hooks: Hooks, mlflow_url: str, prefix: str) -> Team:
    workspace = make_workspace(hooks, mlflow_url, prefix)
    clients = [
        httpx.Client(
            base_url=hooks.url,
            headers=auth(hooks.running.create_key(scope, workspace=workspace)),
            timeout=30,
        )
        for scope in (Scope.ADMIN, Scope.WRITE)
    ]
    return Team(workspace, *clients)


def test_each_workspace_receives_only_its_own_events(
    hooks: Hooks, mlflow_server: MlflowProcess, receiver: Receiver
) -> None:
    a, b = team(hooks, mlflow_server.url, "team-a"), team(hooks, mlflow_server.url, "team-b")
    endpoint_a, secret_a = a.add_endpoint(receiver.url("/a"))
    endpoint_b, secret_b = b.add_endpoint(receiver.url("/b"))
    default, _ = hooks.add_endpoint(receiver.url("/default"))
    assert (endpoint_a["workspace"], endpoint_b["workspace"]) == (a.workspace, b.workspace)
    assert default["workspace"] == "default"

    # Two teams, one model name: MLflow keeps them apart, and so do the webhooks.
    name = unique("LSCOR")
    for each in (a, b):
        each.mlflow("POST", "registered-models/create", json={"name": name})
        source = run_source(each.post)
        each.mlflow("POST", "model-versions/create", json={"name": name, **source})
    b.mlflow(
        "POST", "registered-models/alias", json={"name": name, "alias": "canary", "version": "1"}
    )

    expected = {
        "/a": (a.workspace, secret_a, ["registered_model.created", "model_version.created"]),
        "/b": (
            b.workspace,
            secret_b,
            ["registered_model.created", "model_version.created", "model_version.alias_set"],
        ),
    }
    for path, (workspace, secret, types) in expected.items():
        payloads = verified_payloads(receiver.wait_for(path, len(types), settle=0.5), secret)
        assert [p["type"] for p in payloads] == types, path
        assert {p["data"]["workspace"] for p in payloads} == {workspace}
        assert {p["data"]["name"] for p in payloads} == {name}
    assert receiver.requests("/default") == [], "no event of a team reaches another"

    # A workspace admin's listings show their workspace; a platform admin's every one.
    shown_a = a.admin.get("/api/v1/events", params={"limit": 1000}).json()["events"]
    assert {e["workspace"] for e in shown_a} == {a.workspace} and len(shown_a) == 2
    every = hooks.events()
    assert {e["workspace"] for e in every} == {a.workspace, b.workspace}
    assert len(every) == 5
    only_b = hooks.events(workspace=b.workspace)
    assert [e["type"] for e in only_b] == [
        "model_version.alias_set",
        "model_version.created",
        "registered_model.created",
    ]
    # The same change in two workspaces has two dedupe keys.
    keys = {e["dedupe_key"] for e in every if e["type"] == "model_version.created"}
    assert len(keys) == 2
    delivered_b = b.admin.get("/api/v1/deliveries").json()["deliveries"]
    assert {d["endpoint_id"] for d in delivered_b} == {endpoint_b["id"]}
    assert {d["workspace"] for d in delivered_b} == {b.workspace}
    listed = [e["id"] for e in hooks.client.get("/api/v1/webhooks").json()["endpoints"]]
    assert sorted(listed) == sorted([endpoint_a["id"], endpoint_b["id"], default["id"]])
    filtered = hooks.client.get("/api/v1/webhooks", params={"workspace": a.workspace})
    assert [e["id"] for e in filtered.json()["endpoints"]] == [endpoint_a["id"]]

    # A replay by team A's admin goes to A's endpoint alone.
    seen_b = len(receiver.requests("/b"))
    replayed = a.admin.post("/api/v1/replay", json={"since": "2020-01-01T00:00:00Z"})
    assert replayed.status_code == 200 and replayed.json()["queued"] == 2, replayed.text
    again = verified_payloads(receiver.wait_for("/a", 4, settle=0.5)[2:], secret_a)
    assert {p["data"]["workspace"] for p in again} == {a.workspace}
    assert len(receiver.requests("/b")) == seen_b and receiver.requests("/default") == []


def test_a_workspace_admin_cannot_see_or_touch_another_workspaces_endpoint(
    hooks: Hooks, mlflow_server: MlflowProcess, receiver: Receiver
) -> None:
    a, b = team(hooks, mlflow_server.url, "team-a"), team(hooks, mlflow_server.url, "team-b")
    endpoint_a, _ = a.add_endpoint(receiver.url("/a"))
    a.mlflow("POST", "registered-models/create", json={"name": unique("LSCOR")})
    [event_a] = a.admin.get("/api/v1/events").json()["events"]
    receiver.wait_for("/a", 1)
    before = hooks.rows(webhook_endpoints)

    hidden = endpoint_a["id"]
    for method, path, body in (
        ("GET", f"/api/v1/webhooks/{hidden}", None),
        ("POST", f"/api/v1/webhooks/{hidden}/disable", None),
        ("POST", f"/api/v1/webhooks/{hidden}/enable", None),
        ("POST", f"/api/v1/webhooks/{hidden}/rotate-secret", None),
        ("POST", f"/api/v1/webhooks/{hidden}/test", None),
        ("DELETE", f"/api/v1/webhooks/{hidden}", None),
        ("POST", "/api/v1/replay", {"since": "2020-01-01T00:00:00Z", "endpoint_id": hidden}),
        ("POST", "/api/v1/replay", {"event_id": event_a["id"]}),
    ):
        response = b.admin.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert a.workspace not in response.text, "another team's workspace is not revealed"
    assert b.admin.get("/api/v1/webhooks").json()["endpoints"] == []
    assert b.admin.get("/api/v1/events").json()["events"] == []
    seen = b.admin.get("/api/v1/deliveries", params={"endpoint_id": hidden})
    assert seen.json()["deliveries"] == []

    # Naming another workspace outright is refused, naming it (the caller named it).
    for method, path, body, params in (
        ("GET", "/api/v1/webhooks", None, {"workspace": a.workspace}),
        ("GET", "/api/v1/events", None, {"workspace": a.workspace}),
        ("POST", "/api/v1/webhooks", {"url": receiver.url("/x"), "workspace": a.workspace}, None),
    ):
        response = b.admin.request(method, path, json=body, params=params)
        assert response.status_code == 403, (method, path, response.text)
        answer = response.json()
        assert answer["error_code"] == "PERMISSION_DENIED"
        assert f"needs the 'admin' role in workspace '{a.workspace}'" in answer["message"]
    # A workspace's write key administers nothing, not even its own workspace's hooks.
    refused = a.writer.get(f"/api/v1/webhooks/{hidden}")
    assert refused.status_code == 403
    assert f"needs the 'admin' role in workspace '{a.workspace}'" in refused.json()["message"]
    unknown = hooks.client.post(
        "/api/v1/webhooks", json={"url": receiver.url("/x"), "workspace": "no-such-team"}
    )
    assert unknown.status_code == 404 and "no-such-team" in unknown.json()["message"]
    assert hooks.rows(webhook_endpoints) == before, "nothing changed"
    # Team A's own admin and a platform admin do reach it.
    assert a.admin.get(f"/api/v1/webhooks/{hidden}").json()["workspace"] == a.workspace
    assert hooks.endpoint(hidden)["id"] == hidden


def test_the_reconciler_walks_every_workspace(
    hooks: Hooks, mlflow_server: MlflowProcess, receiver: Receiver
) -> None:
    a, b = team(hooks, mlflow_server.url, "team-a"), team(hooks, mlflow_server.url, "team-b")
    _, secret_a = a.add_endpoint(receiver.url("/a"))
    _, secret_b = b.add_endpoint(receiver.url("/b"))
    # Only this test's endpoints receive: the session's MLflow has other tests' models in
    # 'default', which the pass below also finds.
    with hooks.engine.begin() as conn:
        conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.workspace == "default")
            .values(enabled=False)
        )
    name = unique("LSCOR")
    a.mlflow("POST", "registered-models/create", json={"name": name})
    receiver.wait_for("/a", 1)
    # The same name in team B, straight to MLflow: the gateway never sees it.
    direct = {WORKSPACE_HEADER: b.workspace}
    for path, body in (
        ("registered-models/create", {"name": name}),
        ("model-versions/create", {"name": name, "source": "s3://m/x"}),
    ):
        made = httpx.post(
            mlflow_server.url + "/api/2.0/mlflow/" + path, json=body, headers=direct, timeout=30
        )
        assert made.status_code == 200, made.text

    found = reconcile(hooks.engine, mlflow_server.url, grace_seconds=0)
    mine = [e for e in found if e.workspace in (a.workspace, b.workspace)]
    assert sorted((e.workspace, e.type) for e in mine) == [
        (b.workspace, "model_version.created"),
        (b.workspace, "registered_model.created"),
    ], "A's model already had its event; B's same-named one is B's own"
    payloads = verified_payloads(receiver.wait_for("/b", 2, settle=0.5), secret_b)
    assert sorted(p["type"] for p in payloads) == [
        "model_version.created",
        "registered_model.created",
    ]
    assert {(p["data"]["workspace"], p["data"]["name"]) for p in payloads} == {(b.workspace, name)}
    [only] = verified_payloads(receiver.requests("/a"), secret_a)
    assert only["type"] == "registered_model.created", "nothing of B's reached A"
    again = reconcile(hooks.engine, mlflow_server.url, grace_seconds=0)
    assert [e for e in again if e.workspace in (a.workspace, b.workspace)] == []
