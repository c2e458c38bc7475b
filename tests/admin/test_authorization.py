"""One authorizer for every admin operation: a key without the admin role is refused with
PermissionDenied naming the role, and nothing changes (the refusal itself is logged)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import pytest

from hokusai.admin.actor import Actor
from hokusai.authorization import NEEDED, Action, authorize
from hokusai.db.schema import api_keys, deliveries, events, webhook_endpoints, workspaces
from hokusai.errors import PermissionDenied
from hokusai.keys.scopes import Scope
from hokusai.webhooks import outbox
from hokusai.webhooks.events import MODEL_VERSION_CREATED, Event
from tests.admin.support import Admin
from tests.signing_keys import key_pair

Operation = Callable[[Admin, Actor, dict[str, str]], Any]

OPERATIONS: dict[Action, Operation] = {
    Action.KEYS_CREATE: lambda a, actor, t: a.services.keys.create(actor, name="sneaky"),
    Action.KEYS_LIST: lambda a, actor, t: a.services.keys.list(actor),
    Action.KEYS_GET: lambda a, actor, t: a.services.keys.get(actor, t["key"]),
    Action.KEYS_REVOKE: lambda a, actor, t: a.services.keys.revoke(actor, t["key"]),
    Action.KEYS_ROTATE: lambda a, actor, t: a.services.keys.rotate(actor, t["key"]),
    Action.WEBHOOKS_ADD: lambda a, actor, t: a.services.webhooks.add(
        actor, "https://hooks.example.com/x"
    ),
    Action.WEBHOOKS_LIST: lambda a, actor, t: a.services.webhooks.list(actor),
    Action.WEBHOOKS_GET: lambda a, actor, t: a.services.webhooks.get(actor, t["endpoint"]),
    Action.WEBHOOKS_DISABLE: lambda a, actor, t: a.services.webhooks.disable(actor, t["endpoint"]),
    Action.WEBHOOKS_ENABLE: lambda a, actor, t: a.services.webhooks.enable(actor, t["endpoint"]),
    Action.WEBHOOKS_REMOVE: lambda a, actor, t: a.services.webhooks.remove(actor, t["endpoint"]),
    Action.WEBHOOKS_ROTATE_SECRET: lambda a, actor, t: a.services.webhooks.rotate_secret(
        actor, t["endpoint"]
    ),
    Action.WEBHOOKS_TEST: lambda a, actor, t: anyio.run(
        a.services.webhooks.test, actor, t["endpoint"]
    ),
    Action.WEBHOOKS_DELIVERIES: lambda a, actor, t: a.services.webhooks.deliveries(actor),
    Action.WEBHOOKS_EVENTS: lambda a, actor, t: a.services.webhooks.events(actor),
    Action.WEBHOOKS_REPLAY: lambda a, actor, t: a.services.webhooks.replay(
        actor, event_id=t["event"]
    ),
    Action.AUDIT_READ: lambda a, actor, t: a.services.audit.query(actor),
    Action.WORKSPACES_CREATE: lambda a, actor, t: a.services.workspaces.create(actor, "sneaky"),
    Action.WORKSPACES_UPDATE: lambda a, actor, t: a.services.workspaces.update(
        actor, "default", promotion_gate=True
    ),
    Action.WORKSPACES_DELETE: lambda a, actor, t: a.services.workspaces.delete(
        actor, t["workspace"]
    ),
    Action.WORKSPACES_TRUST_KEY: lambda a, actor, t: a.services.workspaces.trust_key(
        actor, "default", key_pair().public_pem
    ),
    Action.WORKSPACES_UNTRUST_KEY: lambda a, actor, t: a.services.workspaces.untrust_key(
        actor, "default", "sha256:" + "0" * 64
    ),
}
# Platform-wide: only a platform admin key (or the operator) may.
PLATFORM_WIDE = {Action.WORKSPACES_CREATE, Action.WORKSPACES_DELETE}


def test_every_action_has_a_rule_and_an_operation_here() -> None:
    assert set(NEEDED) == set(Action)
    assert set(OPERATIONS) == {a for a in Action if NEEDED[a] is Scope.ADMIN}


@pytest.fixture
def targets(admin: Admin) -> dict[str, str]:
    key = admin.services.keys.create(admin.operator, name="victim")
    endpoint = admin.services.webhooks.add(admin.operator, "https://hooks.example.com/in")
    event = Event(MODEL_VERSION_CREATED, {"name": "LSCOR", "version": "1"})
    outbox.emit(admin.engine, [event])
    admin.workspace("team-a")
    return {
        "key": key.record.id,
        "endpoint": endpoint.endpoint.id,
        "event": event.id,
        "workspace": "team-a",
    }


def snapshot(admin: Admin) -> list[list[dict[str, Any]]]:
    tables = (api_keys, webhook_endpoints, deliveries, events, workspaces)
    return [admin.rows(t) for t in tables]


@pytest.mark.parametrize("scope", [Scope.READ, Scope.WRITE], ids=str)
def test_a_key_without_admin_is_refused_and_nothing_changes(
    admin: Admin, targets: dict[str, str], scope: Scope
) -> None:
    actor = admin.key_actor(scope, path="/api/v1/some-admin-path")
    assert actor.key is not None
    # Every operation on one store: a refusal changes nothing, so each sees the same state.
    for action, operation in OPERATIONS.items():
        before, audit_before = snapshot(admin), len(admin.audit())

        with pytest.raises(PermissionDenied) as refused:
            operation(admin, actor, targets)

        assert refused.value.needed == "admin", action
        message = refused.value.message
        who = f"API key {actor.key.display_prefix}… ({actor.key_id}) has '{scope.value}' in "
        if action in PLATFORM_WIDE:
            assert message == (
                "POST /api/v1/some-admin-path is platform-wide: it needs a platform admin key; "
                f"{who}workspace 'default'. Ask a platform admin."
            ), action
        elif action.value.startswith(("keys.", "workspaces.", "audit.")):
            assert message == (
                "POST /api/v1/some-admin-path needs the 'admin' role in workspace 'default'; "
                f"{who}workspace 'default'. Ask an admin of workspace 'default' or a "
                "platform admin."
            ), action
        else:  # the webhooks' own wording, whichever workspace they are scoped to
            assert message.startswith("POST /api/v1/some-admin-path "), action
            assert who in message and "Ask " in message, action
        assert refused.value.http_status == 403
        assert snapshot(admin) == before, action
        # The one row the refusal adds is the refusal itself.
        entries = admin.audit()
        assert len(entries) == audit_before + 1, action
        denied = entries[0]
        assert (denied.action, denied.key_id, denied.status) == ("denied", actor.key_id, 403)
        assert denied.detail is not None
        assert denied.detail["wanted"] == action.value, action
        assert (denied.detail["needed"], denied.detail["role"]) == ("admin", scope.value)
        assert denied.detail["key_workspace"] == "default"
        assert denied.detail["granted_by"] == refused.value.details["granted_by"]


def test_the_operator_and_admin_keys_are_allowed_everything() -> None:
    from hokusai.admin.actor import Origin
    from hokusai.keys.records import KeyRecord

    operator = Actor.operator(Origin.command("keys list"), name="root")
    for action in Action:
        authorize(operator, action)  # does not raise
    record = KeyRecord("key_1", "hk_live_abcdef", "n", "o", Scope.READ, "live",
                       None, None, None, None, None)  # type: ignore[arg-type]  # fmt: skip
    reader = Actor.for_key(record, Origin.command("keys validate"))
    authorize(reader, Action.KEYS_VALIDATE, "default")
    with pytest.raises(
        PermissionDenied, match=r"^keys\.list needs the 'admin' role in workspace 'default'; API"
    ):
        authorize(reader, Action.KEYS_LIST, "default")
    with pytest.raises(PermissionDenied, match=r"^keys\.list is platform-wide"):
        authorize(reader, Action.KEYS_LIST)
    # A platform admin key may do everything, in every workspace and platform-wide.
    platform = Actor.for_key(
        replace(record, scope=Scope.ADMIN, workspace=None), Origin.command("keys list")
    )
    for action in Action:
        authorize(platform, action)
        authorize(platform, action, "team-b")
    # A workspace's admin is an admin there only.
    team_admin = Actor.for_key(
        replace(record, scope=Scope.ADMIN, workspace="team-a"), Origin.command("keys list")
    )
    authorize(team_admin, Action.KEYS_CREATE, "team-a")
    with pytest.raises(PermissionDenied, match="in workspace 'team-b'"):
        authorize(team_admin, Action.KEYS_CREATE, "team-b")
    with pytest.raises(PermissionDenied, match="platform-wide"):
        authorize(team_admin, Action.WORKSPACES_CREATE)
