"""The admin console at /admin/: a person signed in at /login manages keys, webhooks and
workspaces and reads the audit log and health, through the same services and rules as
/api/v1 and the CLI. Over real HTTP to a real gateway and MLflow, on SQLite and
PostgreSQL auth stores (the browser itself is driven in tests/browser)."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MakeGateway, RunningGateway
from tests.webhooks.receiver import Answer, Receiver, always, running_receiver

pytestmark = pytest.mark.integration

PAGE = {"Accept": "text/html,application/xhtml+xml"}
NEW_KEY = re.compile(r'data-new-key="([^"]+)"')


@pytest.fixture
def site(store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway) -> RunningGateway:
    return make_gateway(
        store_url, mlflow_server.url, webhook_allow_private=True, webhook_timeout=2.0
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@contextlib.contextmanager
def signed_in(site: RunningGateway, key: str) -> Iterator[httpx.Client]:
    """A browser on the site (cookies, its own Origin), signed in with ``key``."""
    with httpx.Client(
        base_url=site.url, headers={"Origin": site.url, **PAGE}, timeout=30
    ) as person:
        started = person.post("/login", data={"api_key": key, "next": "/admin/"})
        assert started.status_code == 303 and started.headers["location"] == "/admin/"
        yield person


def whoami(site: RunningGateway, key: str) -> int:
    answer = httpx.get(
        site.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return answer.status_code


def test_without_a_session_the_console_sends_the_browser_to_sign_in(
    site: RunningGateway,
) -> None:
    bare = httpx.get(site.url + "/admin", timeout=30)
    assert bare.status_code == 308 and bare.headers["location"] == "/admin/"
    for path, next_path in (
        ("/admin/", "/admin/"),
        ("/admin/audit?action=keys.create", "/admin/audit%3Faction%3Dkeys.create"),
    ):
        page = httpx.get(site.url + path, headers=PAGE, timeout=30)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=" + next_path
    # A form posted without a session is refused, not followed.
    posted = httpx.post(
        site.url + "/admin/keys/create", data={"name": "x"}, headers=PAGE, timeout=30
    )
    assert posted.status_code == 401


def test_keys_are_created_shown_once_rotated_and_revoked(site: RunningGateway) -> None:
    admin = site.create_key(Scope.ADMIN, owner="ada")
    with signed_in(site, admin) as person:
        home = person.get("/admin/")
        assert home.status_code == 200
        assert 'id="whoami"' in home.text and "ada" in home.text and 'action="/logout"' in home.text
        csp = home.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert "default-src 'none'" in csp
        assert home.headers["x-frame-options"] == "DENY"
        assert home.headers["cache-control"] == "no-store"
        assert (
            person.get("/admin/static/console.css").headers["content-type"].startswith("text/css")
        )

        name = f"ci-{uuid.uuid4().hex[:6]}"
        created = person.post(
            "/admin/keys/create",
            data={
                "name": name,
                "role": "promote",
                "workspace": "default",
                "models": "fraud-*, churn-?",
                "expires_in": "30d",
            },
        )
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        found = NEW_KEY.search(created.text)
        assert found is not None
        new_key = found.group(1)
        assert whoami(site, new_key) == 200

        listing = person.get("/admin/keys")
        assert listing.status_code == 200 and name in listing.text
        assert new_key not in listing.text  # shown once, never again
        row = re.search(
            rf'<tr id="key-(\w+)" data-key-id="\w+" data-state="active">\s*<td>{name}</td>',
            listing.text,
        )
        assert row is not None
        key_id = row.group(1)
        assert "promote" in listing.text and "fraud-*, churn-?" in listing.text

        # Rotating shows the replacement once; the original stops authenticating.
        rotated = person.post("/admin/keys/rotate", data={"key_id": key_id})
        assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
        replacement = NEW_KEY.search(rotated.text)
        assert replacement is not None and replacement.group(1) != new_key
        assert whoami(site, new_key) == 401
        assert whoami(site, replacement.group(1)) == 200
        replacement_id = site.gateway.keys.resolve(replacement.group(1)).id

        revoked = person.post("/admin/keys/revoke", data={"key_id": replacement_id})
        assert revoked.status_code == 303
        assert revoked.headers["location"].startswith("/admin/keys?include_revoked=1")
        shown = person.get(revoked.headers["location"])
        assert f'id="key-{replacement_id}" data-key-id="{replacement_id}" data-state="revoked"' in (
            shown.text
        )
        assert 'id="notice"' in shown.text
        assert whoami(site, replacement.group(1)) == 401

        # A refusal of the service is shown on the page with its status, no trace.
        missing = person.post("/admin/keys/revoke", data={"key_id": "key_nope"})
        assert missing.status_code == 404
        assert 'id="error"' in missing.text and "Traceback" not in missing.text
        bad = person.post("/admin/keys/create", data={"name": "x", "expires_in": "soon"})
        assert bad.status_code == 400 and "not a duration" in bad.text


def test_a_write_session_sees_the_services_refusal(site: RunningGateway) -> None:
    writer = site.create_key(Scope.WRITE, owner="wes")
    with signed_in(site, writer) as person:
        assert person.get("/admin/").status_code == 200
        keys = person.get("/admin/keys")
        assert keys.status_code == 403
        assert 'role="alert"' in keys.text and "admin" in keys.text
        name = f"sneaky-{uuid.uuid4().hex[:6]}"
        refused = person.post("/admin/keys/create", data={"name": name, "role": "admin"})
        assert refused.status_code == 403 and "data-new-key" not in refused.text
        assert person.get("/admin/audit").status_code == 403
        assert person.get("/admin/webhooks").status_code == 403
    assert all(k.name != name for k in site.gateway.keys.list(include_revoked=True))


def test_a_cross_origin_post_with_the_session_cookie_changes_nothing(
    site: RunningGateway,
) -> None:
    admin = site.create_key(Scope.ADMIN)
    victim = site.create_key(Scope.READ)
    victim_id = site.gateway.keys.resolve(victim).id
    with signed_in(site, admin) as person:
        token = person.cookies["hokusai_session"]
    cookie = {"Cookie": f"hokusai_session={token}"}
    name = f"forged-{uuid.uuid4().hex[:6]}"
    for origin in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/"}, {}):
        for path, form in (
            ("/admin/keys/create", {"name": name, "role": "admin"}),
            ("/admin/keys/revoke", {"key_id": victim_id}),
        ):
            forged = httpx.post(
                site.url + path, data=form, headers={**cookie, **origin}, timeout=30
            )
            assert forged.status_code == 403, forged.text
    assert all(k.name != name for k in site.gateway.keys.list(include_revoked=True))
    assert whoami(site, victim) == 200


def test_webhook_endpoints_test_deliveries_and_replays(
    site: RunningGateway, receiver: Receiver
) -> None:
    admin = site.create_key(Scope.ADMIN)
    receiver.on("/broken", always(Answer(status=500, body=b"down")))
    with signed_in(site, admin) as person:
        added = person.post(
            "/admin/webhooks/add",
            data={"url": receiver.url("/hook"), "description": "ci <b>hook</b>"},
        )
        assert added.status_code == 201, added.text
        assert "data-signing-secret=" in added.text and "<b>hook</b>" not in added.text
        endpoint_id = re.search(r'data-endpoint-id="([^"]+)"', added.text).group(1)  # type: ignore[union-attr]
        listing = person.get("/admin/webhooks")
        assert f'id="endpoint-{endpoint_id}"' in listing.text
        assert "ci &lt;b&gt;hook&lt;/b&gt;" in listing.text  # escaped

        tested = person.post("/admin/webhooks/test", data={"endpoint_id": endpoint_id})
        assert tested.status_code == 303
        deliveries = person.get(tested.headers["location"])
        assert deliveries.status_code == 200 and 'id="notice"' in deliveries.text
        assert 'data-status="delivered"' in deliveries.text
        assert 'class="attempt" data-status-code="200"' in deliveries.text
        assert len(receiver.requests("/hook")) == 1

        # A receiver that fails: the test delivery is dead, and can be replayed.
        broken = person.post("/admin/webhooks/add", data={"url": receiver.url("/broken")})
        broken_id = re.search(r'data-endpoint-id="([^"]+)"', broken.text).group(1)  # type: ignore[union-attr]
        failed = person.get(
            person.post("/admin/webhooks/test", data={"endpoint_id": broken_id}).headers["location"]
        )
        assert 'data-status="dead"' in failed.text
        assert 'data-status-code="500"' in failed.text
        event_id = re.search(r'data-event-id="([^"]+)"\s+data-status="dead"', failed.text).group(1)  # type: ignore[union-attr]
        replayed = person.post(
            "/admin/webhooks/replay", data={"event_id": event_id, "endpoint_id": broken_id}
        )
        assert replayed.status_code == 303 and "queued=1" in replayed.headers["location"]

        disabled = person.post("/admin/webhooks/disable", data={"endpoint_id": endpoint_id})
        assert disabled.status_code == 303
        assert (
            f'data-endpoint-id="{endpoint_id}" data-enabled="false"'
            in person.get(disabled.headers["location"]).text
        )
        person.post("/admin/webhooks/enable", data={"endpoint_id": endpoint_id})
        assert (
            f'data-endpoint-id="{endpoint_id}" data-enabled="true"'
            in person.get("/admin/webhooks").text
        )
        removed = person.post("/admin/webhooks/remove", data={"endpoint_id": endpoint_id})
        assert removed.status_code == 303
        assert f'id="endpoint-{endpoint_id}"' not in person.get("/admin/webhooks").text


def test_audit_health_and_workspaces(site: RunningGateway) -> None:
    admin = site.create_key(Scope.ADMIN, owner="ada")
    site.create_key(Scope.READ, owner="rory", name="reader")
    admin_id = site.gateway.keys.resolve(admin).id
    with signed_in(site, admin) as person:
        person.post("/admin/keys/create", data={"name": "audited", "role": "read"})

        audit = person.get("/admin/audit", params={"action": "keys.create", "since": "1h"})
        assert audit.status_code == 200
        actions = re.findall(r'data-action="([^"]+)"', audit.text)
        assert actions and set(actions) == {"keys.create"}
        assert f'data-key-id="{admin_id}"' in audit.text
        by_key = person.get("/admin/audit", params={"key_id": admin_id})
        assert "sessions.start" in by_key.text
        nobody = person.get("/admin/audit", params={"key_id": "key_nobody"})
        assert "No entries match" in nobody.text
        bad = person.get("/admin/audit", params={"since": "yesterday-ish"})
        assert bad.status_code == 400 and 'id="error"' in bad.text

        health = person.get("/admin/health")
        assert health.status_code == 200
        assert 'id="check-auth_store" data-ok="true"' in health.text
        assert 'id="check-mlflow" data-ok="true"' in health.text
        assert "with workspaces" in health.text

        workspaces = person.get("/admin/workspaces")
        assert workspaces.status_code == 200
        assert 'id="workspace-default"' in workspaces.text
        assert "production, champion" in workspaces.text
        assert "rory" in workspaces.text and "reader" in workspaces.text


def test_a_workspace_admin_sees_their_workspace_only(site: RunningGateway) -> None:
    platform = site.create_key(Scope.ADMIN, owner="plato")
    team = "team-" + uuid.uuid4().hex[:8]
    made = httpx.post(
        site.url + "/api/v1/workspaces",
        json={"name": team},
        headers={"Authorization": f"Bearer {platform}"},
        timeout=60,
    )
    assert made.status_code == 201, made.text
    with signed_in(site, platform) as person:
        issued = person.post(
            "/admin/keys/create", data={"name": "team lead", "role": "admin", "workspace": team}
        )
        assert issued.status_code == 201, issued.text
    team_admin = NEW_KEY.search(issued.text).group(1)  # type: ignore[union-attr]
    with signed_in(site, team_admin) as person:
        workspaces = person.get("/admin/workspaces")
        assert workspaces.status_code == 200
        assert f'id="workspace-{team}"' in workspaces.text
        assert 'id="workspace-default"' not in workspaces.text
        keys = person.get("/admin/keys")
        assert keys.status_code == 200 and "team lead" in keys.text
        assert site.gateway.keys.resolve(platform).id not in keys.text
        elsewhere = person.post(
            "/admin/keys/create", data={"name": "stray", "role": "read", "workspace": "default"}
        )
        assert elsewhere.status_code == 403 and 'id="error"' in elsewhere.text
        assert person.get("/admin/audit", params={"workspace": "default"}).status_code == 403
