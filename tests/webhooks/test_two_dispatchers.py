"""Two dispatchers, each with its own event loop and database engine, on one store: every
delivery is made exactly once (claims never overlap), and all of them are made."""

from __future__ import annotations

import os
import secrets
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.webhooks import WebhookAdmin
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.db.schema import deliveries, delivery_attempts
from hokusai.keys.service import KeyService
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.webhooks.dispatcher import Dispatcher, DispatcherSettings
from hokusai.webhooks.events import Event
from hokusai.webhooks.outbox import emit
from hokusai.webhooks.signing import SecretBox
from tests.helpers import POSTGRES_ENV, postgres_database, replicas
from tests.webhooks.receiver import Answer, Receiver, always


def add_endpoint(engine: Any, box: SecretBox, url: str) -> None:
    admin = WebhookAdmin(engine, box, DispatcherSettings(allow_private=True))
    admin.add(Actor.operator(Origin.command("tests")), url)


pytestmark = pytest.mark.integration

EVENTS = 300


class Attempts:
    """Stands in for the metrics: counts the attempts one dispatcher made."""

    def __init__(self) -> None:
        self.count = 0
        self.webhook_deliveries = self

    def labels(self, _outcome: str) -> Attempts:
        return self

    def inc(self) -> None:
        self.count += 1


def run_dispatcher(
    store_url: str,
    box: SecretBox,
    attempts: Attempts,
    start: threading.Barrier,
    stop: threading.Event,
    failures: list[BaseException],
) -> None:
    engine = make_engine(store_url)
    # Small batches and a short poll: many rounds, so the two keep meeting on the same rows.
    settings = DispatcherSettings(allow_private=True, batch=10, poll_interval=0.01)
    dispatcher = Dispatcher(engine, box, settings, attempts)

    async def main() -> None:
        stopped = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(dispatcher.run, stopped)
            while not stop.is_set():
                await anyio.sleep(0.02)
            stopped.set()

    try:
        start.wait(timeout=30)
        anyio.run(main)
    except BaseException as exc:  # reported by the test
        failures.append(exc)
    finally:
        engine.dispose()


def test_two_dispatchers_deliver_each_event_exactly_once(
    store_url: str, receiver: Receiver
) -> None:
    engine = make_engine(store_url)
    upgrade(engine)
    box = SecretBox(secrets.token_bytes(32))
    receiver.on("/both", always(Answer(delay=0.002)))
    add_endpoint(engine, box, receiver.url("/both"))
    made = [
        Event("model_version.tag_set", {"name": f"model-{i % 40}", "version": "1", "value": i})
        for i in range(EVENTS)
    ]
    emit(engine, made[: EVENTS // 2])

    start, stop = threading.Barrier(3), threading.Event()
    counts = [Attempts(), Attempts()]
    failures: list[BaseException] = []
    threads = [
        threading.Thread(
            target=run_dispatcher,
            args=(store_url, box, attempts, start, stop, failures),
            daemon=True,
        )
        for attempts in counts
    ]
    for thread in threads:
        thread.start()
    try:
        start.wait(timeout=30)
        emit(engine, made[EVENTS // 2 :])  # the rest while both are claiming
        received = receiver.wait_for("/both", EVENTS, timeout=90, settle=1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures
    assert not any(thread.is_alive() for thread in threads)

    per_id = Counter(r.webhook_id for r in received)
    assert set(per_id) == {e.id for e in made}
    assert [i for i, n in per_id.items() if n > 1] == [], "a delivery was sent twice"
    assert len(received) == EVENTS
    assert sum(a.count for a in counts) == EVENTS
    assert all(a.count > 0 for a in counts), [a.count for a in counts]

    with engine.connect() as conn:
        states = conn.execute(select(deliveries.c.status, deliveries.c.attempts)).all()
        attempt_rows = conn.execute(select(delivery_attempts.c.delivery_id)).scalars().all()
    engine.dispose()
    assert Counter(states) == {("delivered", 1): EVENTS}
    assert len(attempt_rows) == len(set(attempt_rows)) == EVENTS


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} is not set")
def test_two_serve_processes_on_postgresql_deliver_each_event_once(
    receiver: Receiver, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    """The same, as deployed: two `hokusai serve` replicas, each with its own dispatcher, on
    one PostgreSQL store; events are registered through both."""
    secret = secrets.token_urlsafe(48)
    receiver.on("/replicas", always(Answer()))
    with postgres_database() as store:
        engine = make_engine(store)
        try:
            upgrade(engine)
            write_key = KeyService(engine, secret.encode()).create(name="ci", owner="tests").key
            add_endpoint(engine, SecretBox(secret.encode()), receiver.url("/replicas"))
        finally:
            engine.dispose()
        env = {"HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1", "HOKUSAI_RECONCILE_INTERVAL": "0"}
        with replicas(["a", "b"], store, secret, mlflow_server.url, tmp_path, env=env) as pair:
            names = [f"replicated-{secrets.token_hex(4)}-{i}" for i in range(20)]
            for i, name in enumerate(names):
                response = httpx.post(
                    pair[i % 2].url + "/api/mlflow/api/2.0/mlflow/registered-models/create",
                    json={"name": name},
                    headers={"Authorization": f"Bearer {write_key}"},
                    timeout=60,
                )
                assert response.status_code == 200, response.text
            received = receiver.wait_for("/replicas", len(names), timeout=90, settle=2.0)
    per_id = Counter(r.webhook_id for r in received)
    assert [i for i, n in per_id.items() if n > 1] == [], "a delivery was sent twice"
    assert sorted(r.payload["data"]["name"] for r in received) == sorted(names)
