"""Two gateway replicas (two Gateway instances, each with its own uvicorn server, event loop
and engine, on separate loopback ports) share one key's rate limit: through PostgreSQL when
that is the auth store, through Redis when HOKUSAI_REDIS_URL is set. A key over its limit on
the sum of both gets 429 on either. A shared store that does not answer leaves the gateway
up, limiting per replica, and counted in /metrics."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    POSTGRES_ENV,
    MakeGateway,
    RunningGateway,
    ServeGateway,
    free_port,
    gateway_settings,
    postgres_database,
)

pytestmark = pytest.mark.integration

REDIS_ENV = "HOKUSAI_TEST_REDIS_URL"
# Read at import: the autouse fixture clears HOKUSAI_* variables before each test.
REDIS_URL = os.environ.get(REDIS_ENV)
GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


@pytest.fixture(params=["postgres", "redis"])
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    """(auth store URL, Redis URL or None): PostgreSQL alone, or PostgreSQL plus Redis."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set (replicas share PostgreSQL)")
    if request.param == "redis" and not REDIS_URL:
        pytest.skip(f"{REDIS_ENV} is not set")
    with postgres_database() as store:
        yield store, (REDIS_URL if request.param == "redis" else None)


def two_replicas(
    serve_gateway: ServeGateway,
    store: str,
    redis_url: str | None,
    mlflow_url: str,
    tmp_path: Path,
    **limits: object,
) -> list[RunningGateway]:
    """Two gateways on ``store``, each with a home of its own; stopped after the test."""
    started = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        settings = gateway_settings(store, mlflow_url, home, redis_url=redis_url, **limits)
        settings.secret_key = "test-secret-shared"  # replicas share the server secret
        started.append(serve_gateway(settings))
    return started


def get(replica: RunningGateway, key: str) -> httpx.Response:
    return httpx.get(
        replica.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_key_over_the_sum_of_both_replicas_gets_429_on_either(
    shared: tuple[str, str | None],
    mlflow_server: MlflowProcess,
    tmp_path: Path,
    serve_gateway: ServeGateway,
) -> None:
    store, redis_url = shared
    # 10 at once, then one every 100 s: nothing refills during the test.
    a, b = two_replicas(
        serve_gateway,
        store,
        redis_url,
        mlflow_server.url,
        tmp_path,
        rate_limit_per_second=0.01,
        rate_limit_burst=10,
    )
    key = a.create_key()
    assert a.gateway.key_limiter.shared == ("redis" if redis_url else "postgresql")
    statuses = [get(replica, key).status_code for replica in (a, b) * 5]
    assert statuses == [200] * 10  # the burst, spent half on each replica
    for replica in (a, b, b, a):
        refused = get(replica, key)
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "over its rate limit" in body["message"]
        assert int(refused.headers["retry-after"]) >= 1
    # Another key has a bucket of its own, on both.
    other = a.create_key()
    assert get(a, other).status_code == 200 and get(b, other).status_code == 200
    for replica in (a, b):
        metrics = httpx.get(replica.url + "/metrics").text
        assert 'hokusai_rate_limited_total{limit="key"} 2.0' in metrics
        assert "hokusai_rate_limit_fallbacks_total 0.0" in metrics


def test_an_unreachable_shared_store_limits_per_replica_and_is_counted(
    mlflow_server: MlflowProcess, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    running = make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}",
        mlflow_server.url,
        redis_url=nobody,
        rate_limit_per_second=0.01,
        rate_limit_burst=3,
    )
    key = running.create_key()
    statuses = [get(running, key).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # the local bucket still limits
    metrics = httpx.get(running.url + "/metrics").text
    assert "hokusai_rate_limit_fallbacks_total 5.0" in metrics
