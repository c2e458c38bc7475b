"""The OpenID provider (``provider.mjs``), started once for a test module."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.helpers import OidcClient, OidcProvider, free_port, start_oidc_provider


@pytest.fixture(scope="module")
def oidc_client() -> OidcClient:
    # Nothing listens at the redirect URI: the tests read the code from the redirect itself.
    return OidcClient(
        client_id="hokusai",
        client_secret=secrets.token_urlsafe(24),
        redirect_uri=f"http://127.0.0.1:{free_port()}/auth/callback",
    )


@pytest.fixture(scope="module")
def oidc_provider(
    oidc_client: OidcClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    provider = start_oidc_provider(
        free_port(),
        oidc_client.client_id,
        oidc_client.client_secret,
        oidc_client.redirect_uri,
        log=log,
    )
    yield provider
    provider.stop()
