"""A person in a browser: sign in at /login with a key, use the MLflow UI at the tracking
URI through a session cookie, sign out; the key's state ends the session; a cookie never
authenticates another site's request. Over real HTTP to a real gateway and MLflow, on
SQLite and PostgreSQL auth stores (the browser itself is driven in tests/browser)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MakeGateway, RunningGateway

pytestmark = pytest.mark.integration

PAGE = {"Accept": "text/html,application/xhtml+xml"}
UI = "/api/mlflow/"
SEARCH = "/api/mlflow/ajax-api/2.0/mlflow/registered-models/search"
CREATE = "/api/mlflow/ajax-api/2.0/mlflow/registered-models/create"


@pytest.fixture
def site(store_url: str, mlflow_server: MlflowProcess, make_gateway: MakeGateway) -> RunningGateway:
    return make_gateway(store_url, mlflow_server.url, session_idle_timeout=timedelta(seconds=2))


def browser(site: RunningGateway) -> httpx.Client:
    """A client that keeps cookies and sends its own origin, as a browser on the site."""
    return httpx.Client(base_url=site.url, headers={"Origin": site.url}, timeout=30)


def sign_in(client: httpx.Client, key: str, next_path: str = UI) -> httpx.Response:
    return client.post("/login", data={"api_key": key, "next": next_path})


def test_sign_in_use_the_ui_and_sign_out(site: RunningGateway) -> None:
    key = site.create_key(Scope.WRITE)
    with browser(site) as person:
        # Not signed in: the UI sends the browser to the sign-in page, an API call is 401.
        page = person.get(UI, headers=PAGE)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/api/mlflow/"
        assert person.get(SEARCH).status_code == 401
        form = person.get("/login")
        assert form.status_code == 200 and 'name="api_key"' in form.text
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]

        signed_in = sign_in(person, key)
        # To the UI, with the key's workspace chosen for MLflow's UI.
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == UI + "#/?workspace=default"
        set_cookie = signed_in.headers["set-cookie"]
        assert set_cookie.startswith("hokusai_session=")
        assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
        assert key not in set_cookie  # a token stands for the key

        # The MLflow UI at the tracking URI, and its calls through the same policy.
        ui = person.get(UI, headers=PAGE)
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        assert person.get("/", headers=PAGE).headers["location"] == UI
        assert person.get(SEARCH).status_code == 200
        name = f"ui-{uuid.uuid4().hex[:8]}"
        assert person.post(CREATE, json={"name": name}).status_code == 200

        # The sign-in is audited under the key.
        key_id = site.gateway.keys.resolve(key).id
        actions = [e["action"] for e in site.gateway.audit.read(key_id=key_id)]
        assert "sessions.start" in actions and "mlflow.write" in actions

        out = person.post("/logout")
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
        assert person.get(SEARCH).status_code == 401


def test_a_cookie_never_authenticates_another_sites_write(site: RunningGateway) -> None:
    key = site.create_key(Scope.WRITE)
    with browser(site) as person:
        sign_in(person, key)
        token = person.cookies["hokusai_session"]
    name = f"csrf-{uuid.uuid4().hex[:8]}"
    cookie = {"Cookie": f"hokusai_session={token}"}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {},  # neither Origin nor Referer
    ):
        refused = httpx.post(
            site.url + CREATE, json={"name": name}, headers={**cookie, **headers}, timeout=30
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
        assert "another origin" in refused.json()["message"]
    # Reads need no origin; the model was never made.
    missing = httpx.get(
        site.url + "/api/mlflow/api/2.0/mlflow/registered-models/get",
        params={"name": name},
        headers=cookie,
        timeout=30,
    )
    assert missing.status_code == 404
    # A login form posted from another site is refused too.
    forced = httpx.post(
        site.url + "/login",
        data={"api_key": key},
        headers={"Origin": "https://evil.example"},
        timeout=30,
    )
    assert forced.status_code == 403 and "set-cookie" not in forced.headers


def test_a_read_only_session_reads_and_every_write_explains_itself(site: RunningGateway) -> None:
    with browser(site) as person:
        sign_in(person, site.create_key(Scope.READ))
        assert person.get(SEARCH).status_code == 200
        refused = person.post(CREATE, json={"name": "nope"})
        assert refused.status_code == 403
        assert "needs the 'write' role" in refused.json()["message"]


def test_revoking_the_key_ends_its_sessions_at_once(site: RunningGateway) -> None:
    key = site.create_key(Scope.WRITE)
    with browser(site) as person:
        sign_in(person, key)
        assert person.get(SEARCH).status_code == 200
        site.revoke_key(key)
        ended = person.get(SEARCH)
        assert ended.status_code == 401
        assert (
            "session has ended" in ended.json()["message"] and "revoked" in ended.json()["message"]
        )
        assert person.get(UI, headers=PAGE).headers["location"].startswith("/login")


def test_bad_keys_and_idle_sessions(site: RunningGateway) -> None:
    with browser(site) as person:
        wrong = sign_in(person, "hk_live_not-a-key")
        assert wrong.status_code == 401 and "Malformed API key" in wrong.text
        assert "hokusai_session" not in person.cookies
        # Only a path of this site is followed after sign-in.
        elsewhere = sign_in(person, site.create_key(Scope.READ), next_path="//evil.example/x")
        assert elsewhere.headers["location"] == UI + "#/?workspace=default"
        assert person.get(SEARCH).status_code == 200
        time.sleep(2.5)  # longer than this site's idle timeout
        idle = person.get(SEARCH)
        assert idle.status_code == 401 and "idle" in idle.json()["message"]
