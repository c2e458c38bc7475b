"""Two gateway replicas (separate `hokusai serve` processes) on one PostgreSQL store: a key
revoked through one is refused by the other within a second."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import POSTGRES_ENV, Replica, postgres_database, replicas, store_keys

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    # Skipped before any fixture starts; set but unreachable PostgreSQL fails in the test.
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"{POSTGRES_ENV} is not set (replicas share PostgreSQL)",
    ),
]

GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


@pytest.fixture
def shared_store() -> Iterator[str]:
    """A fresh PostgreSQL database. Set but unreachable PostgreSQL is a failure, not a skip."""
    with postgres_database() as url:
        yield url


def get(replica: Replica, key: str) -> httpx.Response:
    return httpx.get(replica.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}"})


def test_revocation_reaches_the_other_replica_within_a_second(
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

        accepted_meanwhile = 0
        while True:
            response = get(b, victim)
            elapsed = time.monotonic() - revoked_at
            if response.status_code != 200:
                break
            accepted_meanwhile += 1
            assert elapsed < 3.0, f"replica B still accepts the revoked key after {elapsed:.2f} s"
            time.sleep(0.02)
        assert response.status_code == 401, response.text
        assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert "revoked" in response.json()["message"]
        assert elapsed < 1.0, (
            f"replica B refused the revoked key only {elapsed:.2f} s after the revocation "
            f"({accepted_meanwhile} requests accepted meanwhile)"
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
        refused_after: dict[str, float] = {}
        while len(refused_after) < 2:
            for replica in (a, b):
                if (
                    replica.name not in refused_after
                    and get(replica, second.key).status_code == 401
                ):
                    refused_after[replica.name] = time.monotonic() - revoked_at
            assert time.monotonic() - revoked_at < 3.0, f"still accepted: {refused_after}"
            time.sleep(0.02)
        assert max(refused_after.values()) < 1.0, refused_after
