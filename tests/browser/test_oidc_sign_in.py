"""Chromium through the OpenID provider's sign-in, as a person's browser will go through it
for the gateway: the provider's cookies and redirects, the code back at the client's
redirect URI, and that code exchanged (with its PKCE verifier) for the user's ID token."""

from __future__ import annotations

import secrets
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import authlib.deprecate  # noqa: F401
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Page

from tests.helpers import OidcClient, OidcProvider, free_port, start_oidc_provider

with warnings.catch_warnings():
    # authlib 1.9 would rather its httpx client ran on httpx2; on httpx it works as before.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.integration


class Callback(BaseHTTPRequestHandler):
    """The client's redirect URI: records where the browser came back and says so."""

    arrived: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.arrived.append(self.path)
        body = b"<!doctype html><title>back</title><h1>signed in</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # pytest shows the assertions; the access log adds nothing


@pytest.fixture(scope="module")
def callback_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cb"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def client(callback_url: str) -> OidcClient:
    return OidcClient("hokusai", secrets.token_urlsafe(24), callback_url)


@pytest.fixture(scope="module")
def provider(
    client: OidcClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    log: Path = tmp_path_factory.mktemp("oidc") / "provider.log"
    running = start_oidc_provider(
        free_port(), client.client_id, client.client_secret, client.redirect_uri, log=log
    )
    yield running
    running.stop()


def test_chromium_signs_in_at_the_provider(
    provider: OidcProvider, client: OidcClient, page: Page
) -> None:
    discovery = httpx.get(provider.issuer + "/.well-known/openid-configuration", timeout=10).json()
    verifier, state, nonce = (secrets.token_urlsafe(48) for _ in range(3))
    oauth = OAuth2Client(
        client_id=client.client_id,
        client_secret=client.client_secret,
        redirect_uri=client.redirect_uri,
        scope="openid email profile",
        code_challenge_method="S256",
        timeout=10,
    )
    with oauth:
        url, _ = oauth.create_authorization_url(
            discovery["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        Callback.arrived.clear()
        page.goto(url)
        page.get_by_role("heading", name="signed in").wait_for()
        assert page.url.startswith(client.redirect_uri + "?")
        back = [path for path in Callback.arrived if path.startswith("/cb?")]
        assert len(back) == 1, Callback.arrived
        query = parse_qs(urlsplit(back[0]).query)
        assert query["state"] == [state]
        token = oauth.fetch_token(
            discovery["token_endpoint"], code=query["code"][0], code_verifier=verifier
        )
    keys = KeySet.import_key_set(httpx.get(discovery["jwks_uri"], timeout=10).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == provider.issuer and claims["nonce"] == nonce
    assert (claims["email"], claims["groups"]) == ("ana@example.com", ["gtm-admins"])
    # The browser holds the provider's session now (its context, new for this test, started
    # without one), as a person's browser does after signing in.
    assert any(cookie["name"] == "_session" for cookie in page.context.cookies(provider.issuer))
