"""What the topology tests share: their marks, and clients of nginx from another loopback
address than the one nginx itself uses towards the replicas."""

from __future__ import annotations

import os
import ssl

import httpx
import pytest

from tests.helpers import POSTGRES_ENV, auth

pytestmark = [
    pytest.mark.integration,
    # Starting the whole topology costs minutes: it runs in `make faults`, which CI runs
    # after `make test`, so `make test` stays under 15 minutes.
    pytest.mark.reliability,
    # The first test also waits for the whole topology to start (MLflow alone can take two
    # minutes on a busy machine).
    pytest.mark.timeout(900),
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"{POSTGRES_ENV} is not set (the topology runs on PostgreSQL)",
    ),
]

ARTIFACTS_API = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/"
# nginx reaches the replicas from 127.0.0.1 (their trusted proxy); clients come from here.
CLIENT_ADDRESS = "127.0.0.2"


def client(base_url: str, ca_bundle: str, key: str | None = None, **kwargs: object) -> httpx.Client:
    """An HTTPS client of nginx, connecting from CLIENT_ADDRESS, trusting only the test CA."""
    trusted = ssl.create_default_context(cafile=ca_bundle)
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=trusted, retries=0)
    kwargs.setdefault("timeout", 60)
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        headers=auth(key) if key else None,
        **kwargs,  # type: ignore[arg-type]
    )
