"""Single sign-on at the HTTP level: a real gateway, on each store, signs people in through
a real OpenID provider (code flow with PKCE), maps them to a role and workspace, and
refuses tampered, replayed, unmapped and revoked sign-ins with a readable page."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from sqlalchemy import select

from hokusai.admin.actor import Actor, Origin
from hokusai.db.schema import api_keys, audit_log, sso_attempts
from hokusai.errors import InvalidInput
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    OidcProvider,
    RunningGateway,
    ServeGateway,
    free_port,
    gateway_settings,
    start_oidc_provider,
)

pytestmark = pytest.mark.integration

CLIENT_ID = "hokusai"
ANA_RULES = '[{"group": "gtm-admins", "workspace": "default", "role": "promote"}]'
MAX_REDIRECTS = 10


@dataclass
class Setup:
    port: int
    secret: str
    provider: OidcProvider


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One provider for the module; its one client's redirect URI is the gateways' port."""
    port, secret = free_port(), secrets.token_urlsafe(24)
    provider = start_oidc_provider(
        free_port(),
        CLIENT_ID,
        secret,
        f"http://127.0.0.1:{port}/login/sso/callback",
        log=tmp_path_factory.mktemp("oidc") / "provider.log",
    )
    yield Setup(port, secret, provider)
    provider.stop()


def sso_gateway(
    serve_gateway: ServeGateway,
    setup: Setup,
    store: str,
    mlflow: MlflowProcess,
    home: Path,
    role_map: str = ANA_RULES,
) -> RunningGateway:
    """A gateway signing people in through the module's provider, on the port its
    redirect URI names; stopped after the test."""
    settings = gateway_settings(
        store,
        mlflow.url,
        home,
        oidc_issuer=setup.provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=setup.secret,
        oidc_role_map=role_map,
    )
    return serve_gateway(settings, port=setup.port)


@pytest.fixture
def gateway(
    setup: Setup,
    store_url: str,
    mlflow_server: MlflowProcess,
    tmp_path: Path,
    serve_gateway: ServeGateway,
) -> RunningGateway:
    return sso_gateway(serve_gateway, setup, store_url, mlflow_server, tmp_path)


def to_callback(browser: httpx.Client, gateway_url: str) -> str:
    """Starts a sign-in and follows the provider (which signs Ana in without a form) until
    it sends the browser back; returns that callback URL, not yet opened."""
    answer = browser.get("/login/sso", params={"next": "/api/mlflow/"})
    assert answer.status_code == 303, answer.text
    url = answer.headers["location"]
    with httpx.Client(timeout=10) as at_provider:
        for _ in range(MAX_REDIRECTS):
            answer = at_provider.get(url)
            assert answer.status_code in (302, 303), (answer.status_code, answer.text[:300])
            url = urljoin(url, answer.headers["location"])
            if url.startswith(gateway_url + "/login/sso/callback"):
                return url
    raise AssertionError("the provider never sent the browser back")


def callback(browser: httpx.Client, url: str) -> httpx.Response:
    parts = urlsplit(url)
    return browser.get(parts.path + "?" + parts.query)


def test_a_person_signs_in_with_the_mapped_role_and_is_audited(
    gateway: RunningGateway,
) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        assert "Sign in with single sign-on" in browser.get("/login").text
        answer = callback(browser, to_callback(browser, gateway.url))
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/api/mlflow/"
        assert browser.cookies.get("hokusai_session")
        me = browser.get("/api/v1/whoami")
        assert me.status_code == 200, me.text
    body = me.json()
    key = body.get("key", body)
    assert key["owner"] == "Ana Lovelace <ana@example.com>"
    assert key["name"] == "single sign-on: ana@example.com"
    assert (key["scope"], key["workspace"]) == ("promote", "default")
    with gateway.gateway.engine.connect() as conn:
        person = conn.execute(select(api_keys).where(api_keys.c.subject.is_not(None))).one()
        entry = conn.execute(select(audit_log).where(audit_log.c.action == "sessions.start")).one()
    assert person.subject == f"{gateway.gateway.settings.oidc_issuer}#ana"
    assert (entry.key_id, entry.owner, entry.workspace) == (
        person.id,
        "Ana Lovelace <ana@example.com>",
        "default",
    )
    assert '"sso"' in entry.detail
    # The person's row is no key: rotating it is refused, readably.
    with pytest.raises(InvalidInput, match="single sign-on"):
        gateway.gateway.services.keys.rotate(Actor.operator(Origin.command("tests")), person.id)


def test_a_tampered_state_is_refused_and_creates_nothing(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        url = to_callback(browser, gateway.url)
        state = urlsplit(url).query.split("state=")[1].split("&")[0]
        answer = callback(browser, url.replace(state, state[:-2] + "xx"))
    assert answer.status_code == 400
    assert "not valid" in answer.text
    assert "hokusai_session" not in answer.headers.get("set-cookie", "")
    assert_nobody(gateway)


def test_a_replayed_callback_is_refused(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        url = to_callback(browser, gateway.url)
        binding = browser.cookies.get("hokusai_sso")
        assert callback(browser, url).status_code == 303
        browser.cookies.set("hokusai_sso", binding or "", path="/login/sso")
        again = callback(browser, url)
    assert again.status_code == 400
    assert "already used" in again.text
    with gateway.gateway.engine.connect() as conn:
        assert (
            len(conn.execute(select(audit_log).where(audit_log.c.action == "sessions.start")).all())
            == 1
        )


def test_a_callback_in_another_browser_is_refused(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        url = to_callback(browser, gateway.url)
    with httpx.Client(base_url=gateway.url, timeout=10) as other:
        answer = callback(other, url)
    assert answer.status_code == 400
    assert "this browser" in answer.text
    assert_nobody(gateway)


def test_a_person_no_rule_maps_is_refused(
    setup: Setup,
    store_url: str,
    mlflow_server: MlflowProcess,
    tmp_path: Path,
    serve_gateway: ServeGateway,
) -> None:
    rules = '[{"email": "*@elsewhere.example", "workspace": "default", "role": "read"}]'
    running = sso_gateway(serve_gateway, setup, store_url, mlflow_server, tmp_path, role_map=rules)
    with httpx.Client(base_url=running.url, timeout=10) as browser:
        answer = callback(browser, to_callback(browser, running.url))
    assert answer.status_code == 403
    assert "ana@example.com" in answer.text and "no access" in answer.text
    assert_nobody(running)


def test_revoking_the_person_ends_the_session_at_once(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        assert callback(browser, to_callback(browser, gateway.url)).status_code == 303
        assert browser.get("/api/v1/whoami").status_code == 200
        with gateway.gateway.engine.connect() as conn:
            person = conn.execute(select(api_keys.c.id).where(api_keys.c.subject.is_not(None)))
            person_id = person.scalar_one()
        gateway.gateway.services.keys.revoke(Actor.operator(Origin.command("tests")), person_id)
        assert browser.get("/api/v1/whoami").status_code == 401
        # And signing in again is refused while the row stays revoked.
        again = callback(browser, to_callback(browser, gateway.url))
    assert again.status_code == 403
    assert "revoked" in again.text


def assert_nobody(running: RunningGateway) -> None:
    with running.gateway.engine.connect() as conn:
        assert conn.execute(select(api_keys).where(api_keys.c.subject.is_not(None))).all() == []
        assert (
            conn.execute(select(audit_log).where(audit_log.c.action == "sessions.start")).all()
            == []
        )
        # The attempt itself stays, used or not, until it expires.
        assert conn.execute(select(sso_attempts)).all()
