"""Single sign-on in Chromium: from the gateway's sign-in page through the OpenID provider
and back into the MLflow UI as the person the provider named, with the role the role map
gives them; revoking the person's row ends the browser's session at once."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from hokusai.admin.actor import Actor, Origin
from hokusai.db.schema import api_keys, audit_log
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    RunningGateway,
    ServeGateway,
    free_port,
    gateway_settings,
    start_oidc_provider,
)

pytestmark = pytest.mark.integration

CLIENT_ID = "hokusai"


@pytest.fixture
def sso_gateway(
    mlflow_server: MlflowProcess, serve_gateway: ServeGateway, tmp_path: Path
) -> Iterator[RunningGateway]:
    port, secret = free_port(), secrets.token_urlsafe(24)
    provider = start_oidc_provider(
        free_port(),
        CLIENT_ID,
        secret,
        f"http://127.0.0.1:{port}/login/sso/callback",
        log=tmp_path / "provider.log",
    )
    settings = gateway_settings(
        f"sqlite:///{tmp_path / 'hokusai.db'}",
        mlflow_server.url,
        tmp_path,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=secret,
        oidc_role_map='[{"group": "gtm-admins", "workspace": "default", "role": "promote"}]',
    )
    yield serve_gateway(settings, port=port)
    provider.stop()


def test_sign_in_through_the_provider_lands_in_the_mlflow_ui_as_the_person(
    sso_gateway: RunningGateway, page: Page
) -> None:
    page.goto(sso_gateway.url + "/login")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.wait_for_url(sso_gateway.url + "/api/mlflow/**", timeout=30_000)
    expect(page).to_have_title(re.compile("MLflow", re.IGNORECASE))
    me = page.request.get(sso_gateway.url + "/api/v1/whoami")
    assert me.status == 200, me.text()
    body = me.json()
    assert body["owner"] == "Ana Lovelace <ana@example.com>"
    assert (body["scope"], body["workspace"]) == ("promote", "default")
    with sso_gateway.gateway.engine.connect() as conn:
        entry = conn.execute(select(audit_log).where(audit_log.c.action == "sessions.start")).one()
        person_id = conn.execute(
            select(api_keys.c.id).where(api_keys.c.subject.is_not(None))
        ).scalar_one()
    assert (entry.owner, entry.key_id) == ("Ana Lovelace <ana@example.com>", person_id)

    sso_gateway.gateway.services.keys.revoke(Actor.operator(Origin.command("tests")), person_id)
    assert page.request.get(sso_gateway.url + "/api/v1/whoami").status == 401
    page.goto(sso_gateway.url + "/api/mlflow/")
    expect(page).to_have_url(re.compile(re.escape(sso_gateway.url) + "/login"))
