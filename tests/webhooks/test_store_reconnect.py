"""PostgreSQL dropping every connection under load (what a restart does to its clients):
the gateway and its dispatcher recover by themselves, without being restarted."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hokusai.db.engine import normalise_url
from tests.helpers import MLFLOW_API, auth
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Hooks, MakeHooks, unique

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

GET_BY_NAME = MLFLOW_API + "experiments/get-by-name?experiment_name=Default"


def terminate_every_connection(store_url: str) -> int:
    """Every backend of the store's database is ended, as a server restart ends them."""
    url = make_url(normalise_url(store_url))
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": url.database},
                ).all()
            )
    finally:
        admin.dispose()


def test_gateway_and_dispatcher_survive_the_store_dropping_connections(
    store_url: str, make_hooks: MakeHooks, receiver: Receiver
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL fault")
    # No key cache: every request reads the store, so the fault meets requests in flight.
    hooks: Hooks = make_hooks(key_cache_seconds=0)
    endpoint, _ = hooks.add_endpoint(receiver.url("/after-restart"))
    read_key = hooks.write_key

    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=hooks.url, headers=auth(read_key), timeout=30) as client:
            for _ in range(2000):  # bounded, whatever happens
                if stop.is_set():
                    return
                statuses[client.get(GET_BY_NAME).status_code] += 1

    workers = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        terminated = 0
        for _ in range(3):
            terminated += terminate_every_connection(store_url)
            # A write around the fault: it may be refused (503) while connections drop.
            hooks.writer.post(MLFLOW_API + "registered-models/create", json={"name": unique("x")})
            time.sleep(0.5)
        assert terminated > 0, "the fault ended no connection"
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert statuses[200] > 0
    # During the fault a request may get 503 (auth store unavailable), never a 500.
    assert set(statuses) <= {200, 503}, statuses

    # Afterwards, without restarting anything: requests succeed and deliveries are made.
    with httpx.Client(base_url=hooks.url, headers=auth(read_key), timeout=30) as client:
        after = [client.get(GET_BY_NAME).status_code for _ in range(20)]
    assert after == [200] * 20, after
    name = unique("after")
    hooks.create_model(name)
    receiver.wait_for("/after-restart", 1, timeout=60)
    emitted = {e["id"] for e in hooks.events()}
    delivered = hooks.wait_deliveries(
        lambda found: (
            {d["event_id"] for d in found} == emitted
            and all(d["status"] == "delivered" for d in found)
        ),
        "every event emitted, during and after the fault, delivered",
        endpoint_id=endpoint["id"],
    )
    names = {r.payload["data"].get("name") for r in receiver.requests("/after-restart")}
    assert name in names
    assert len(receiver.requests("/after-restart")) == len(delivered)
