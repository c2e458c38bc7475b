"""Two gateway replicas (separate `hokusai serve` processes) on one PostgreSQL store: a key
revoked through one is refused by the other within the key cache's lifetime."""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.settings import Settings
from tests.helpers import (
    POSTGRES_ENV,
    Replica,
    accepted_until_refused,
    postgres_database,
    replicas,
    store_keys,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    # Skipped before any fixture starts; set but unreachable PostgreSQL fails in the test.
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"{POSTGRES_ENV} is not set (replicas share PostgreSQL)",
    ),
]

# The replicas run with the default: the bound on how late a revocation reaches one.
KEY_CACHE_SECONDS = Settings.model_fields["key_cache_seconds"].default
GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


@pytest.fixture
def shared_store() -> Iterator[str]:
    """A fresh PostgreSQL database. Set but unreachable PostgreSQL is a failure, not a skip."""
    with postgres_database() as url:
        yield url


def get(replica: Replica, key: str) -> httpx.Response:
    return httpx.get(replica.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}"})


def test_revocation_reaches_the_other_replica_within_the_key_cache_lifetime(
    shared_store: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    secret = secrets.token_urlsafe(48)
    with store_keys(shared_store, secret) as keys:
        admin = keys.create(name="ops", owner="tests", scope=Scope.ADMIN).key
        issued = keys.create(name="ci", owner="tests", scope=Scope.WRITE)
        second = keys.create(name="batch", owner="tests", scope=Scope.READ)
    victim, victim_id = issued.key, issued.record.id

    with replicas(["a", "b"], shared_store, secret, mlflow_server.url, tmp_path) as (a, b):
        assert get(a, victim).status_code == 200
        assert get(b, victim).status_code == 200  # B now trusts the key from its cache

        revoke = httpx.post(
            f"{a.url}/api/v1/keys/{victim_id}/revoke",
            headers={"Authorization": f"Bearer {admin}"},
        )
        revoked_at = time.monotonic()
        assert revoke.status_code == 200, revoke.text
        assert revoke.json()["state"] == "revoked"

        accepted_for, response = accepted_until_refused(lambda: get(b, victim), since=revoked_at)
        assert response.status_code == 401, response.text
        assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert "revoked" in response.json()["message"]
        assert accepted_for < KEY_CACHE_SECONDS, (
            f"replica B accepted the revoked key in a request sent {accepted_for:.2f} s "
            "after the revocation"
        )

        # Refused from then on, on both replicas, and B's validation says why.
        for replica in (a, b, b):
            assert get(replica, victim).status_code == 401
        answer = httpx.post(
            b.url + "/api/v1/keys/validate",
            json={"key": victim},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
        assert (answer["valid"], answer["reason"], answer["id"]) == (False, "revoked", victim_id)
        # The admin key is untouched on both.
        assert get(a, admin).status_code == 200 and get(b, admin).status_code == 200

        # Revoked outside both replicas (the CLI writes the store): each learns it alone.
        assert get(a, second.key).status_code == 200 and get(b, second.key).status_code == 200
        with store_keys(shared_store, secret) as keys:
            keys.revoke(second.record.id)
        revoked_at = time.monotonic()
        for replica in (a, b):
            accepted_for, response = accepted_until_refused(
                functools.partial(get, replica, second.key), since=revoked_at
            )
            assert response.status_code == 401, response.text
            assert accepted_for < KEY_CACHE_SECONDS, (replica.name, accepted_for)
