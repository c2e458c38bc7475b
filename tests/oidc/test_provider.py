"""The OpenID provider of the single sign-on tests works end to end: discovery, the
authorization code flow with PKCE as a relying party does it (authlib), and an ID token,
signed by the provider's published key, that names the test user and her groups."""

from __future__ import annotations

import secrets
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import authlib.deprecate  # noqa: F401
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers import OidcClient, OidcProvider, free_port, start_oidc_provider

with warnings.catch_warnings():
    # authlib 1.9 would rather its httpx client ran on httpx2; on httpx it works as before.
    # (authlib.deprecate, imported above, makes its own warnings "always" when it loads.)
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.integration

SCOPES = "openid email profile"
MAX_REDIRECTS = 10  # authorize → sign-in → consent → authorize → redirect URI


@pytest.fixture(scope="module")
def discovery(oidc_provider: OidcProvider) -> dict[str, Any]:
    answer = httpx.get(oidc_provider.issuer + "/.well-known/openid-configuration", timeout=10)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_the_discovery_document_names_the_issuer(
    oidc_provider: OidcProvider, discovery: dict[str, Any]
) -> None:
    assert discovery["issuer"] == oidc_provider.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert discovery[endpoint].startswith(oidc_provider.issuer + "/"), endpoint
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["response_types_supported"] == ["code"]
    assert {"openid", "email", "profile", "groups"} <= set(discovery["scopes_supported"])
    assert "groups" in discovery["claims_supported"]


def authorize(url: str, redirect_uri: str) -> dict[str, list[str]]:
    """Follows the provider's redirects as a browser would (cookies kept) until it sends the
    browser back to the client; returns that redirect's query."""
    with httpx.Client(timeout=10) as browser:
        for _ in range(MAX_REDIRECTS):
            answer = browser.get(url)
            assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
            url = urljoin(url, answer.headers["location"])
            if url.startswith(redirect_uri):
                return parse_qs(urlsplit(url).query)
    raise AssertionError(f"no redirect to the client after {MAX_REDIRECTS} hops")


def client_for(oidc_client: OidcClient) -> OAuth2Client:
    return OAuth2Client(
        client_id=oidc_client.client_id,
        client_secret=oidc_client.client_secret,
        redirect_uri=oidc_client.redirect_uri,
        scope=SCOPES,
        code_challenge_method="S256",
        timeout=10,
    )


def sign_in(
    provider: OidcProvider, oidc_client: OidcClient, discovery: dict[str, Any]
) -> dict[str, Any]:
    """The claims of a verified ID token, from a whole code flow with PKCE."""
    verifier, state, nonce = (secrets.token_urlsafe(48) for _ in range(3))
    with client_for(oidc_client) as client:
        url, _ = client.create_authorization_url(
            discovery["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        assert "code_challenge=" in url and "code_challenge_method=S256" in url
        answer = authorize(url, oidc_client.redirect_uri)
        assert answer["state"] == [state]
        assert answer["iss"] == [provider.issuer]
        token = client.fetch_token(
            discovery["token_endpoint"], code=answer["code"][0], code_verifier=verifier
        )
    keys = KeySet.import_key_set(httpx.get(discovery["jwks_uri"], timeout=10).json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": oidc_client.client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
        sub={"essential": True},
    ).validate(id_token.claims)
    # The access token reads the same person from the userinfo endpoint.
    userinfo = httpx.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == id_token.claims["sub"]
    assert userinfo.json()["groups"] == id_token.claims["groups"]
    return id_token.claims


def test_a_code_flow_with_pkce_yields_an_id_token_with_email_and_groups(
    oidc_provider: OidcProvider, oidc_client: OidcClient, discovery: dict[str, Any]
) -> None:
    claims = sign_in(oidc_provider, oidc_client, discovery)
    assert claims["email"] == "ana@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Ana Lovelace"
    assert claims["groups"] == ["gtm-admins"]


def test_the_user_can_be_someone_else(oidc_client: OidcClient, tmp_path: Path) -> None:
    user: dict[str, object] = {
        "sub": "bob",
        "email": "bob@example.com",
        "name": "Bob",
        "groups": [],
    }
    provider = start_oidc_provider(
        free_port(),
        oidc_client.client_id,
        oidc_client.client_secret,
        oidc_client.redirect_uri,
        log=tmp_path / "provider.log",
        user=user,
    )
    try:
        document = httpx.get(provider.issuer + "/.well-known/openid-configuration", timeout=10)
        claims = sign_in(provider, oidc_client, document.json())
    finally:
        provider.stop()
    assert (claims["sub"], claims["email"], claims["groups"]) == ("bob", "bob@example.com", [])
    assert provider.process.returncode is not None


def test_pkce_is_required(oidc_client: OidcClient, discovery: dict[str, Any]) -> None:
    with client_for(oidc_client) as client:
        client.code_challenge_method = None
        url, _ = client.create_authorization_url(
            discovery["authorization_endpoint"], state="s", nonce="n"
        )
    assert "code_challenge" not in url
    answer = authorize(url, oidc_client.redirect_uri)
    assert answer["error"] == ["invalid_request"]
    assert "PKCE" in answer["error_description"][0]


def test_a_code_is_not_exchanged_without_its_verifier(
    oidc_client: OidcClient, discovery: dict[str, Any]
) -> None:
    verifier = secrets.token_urlsafe(48)
    with client_for(oidc_client) as client:
        url, _ = client.create_authorization_url(
            discovery["authorization_endpoint"], state="s", nonce="n", code_verifier=verifier
        )
        code = authorize(url, oidc_client.redirect_uri)["code"][0]
        answer = client.post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": oidc_client.redirect_uri,
                "code_verifier": secrets.token_urlsafe(48),  # not the one of the challenge
            },
            auth=(oidc_client.client_id, oidc_client.client_secret),
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"


def test_a_secret_that_starts_with_a_dash_is_a_value(
    oidc_client: OidcClient, tmp_path: Path
) -> None:
    """Random secrets start with '-' now and then (token_urlsafe): still the client's."""
    secret = "-" + secrets.token_urlsafe(16)
    provider = start_oidc_provider(
        free_port(),
        oidc_client.client_id,
        secret,
        oidc_client.redirect_uri,
        log=tmp_path / "provider.log",
    )
    try:
        document = httpx.get(provider.issuer + "/.well-known/openid-configuration", timeout=10)
        dashed = OidcClient(oidc_client.client_id, secret, oidc_client.redirect_uri)
        claims = sign_in(provider, dashed, document.json())
    finally:
        provider.stop()
    assert claims["email"] == "ana@example.com"
