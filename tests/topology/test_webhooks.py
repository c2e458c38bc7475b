"""Webhooks with two `hokusai worker` dispatchers on the shared auth store: each event is
delivered once; killing one dispatcher mid-burst loses none."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import httpx
import pytest
from stack.topology import Topology
from standardwebhooks import Webhook

from hokusai.keys.scopes import Scope
from tests.helpers import MLFLOW_API
from tests.topology.support import client
from tests.topology.support import pytestmark as marks
from tests.webhooks.receiver import Answer, Receiver, always, running_receiver

pytestmark = marks


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def add_endpoint(topology: Topology, url: str) -> str:
    with client(topology.url, str(topology.ca_bundle), topology.admin_key) as admin:
        response = admin.post(
            "/api/v1/webhooks", json={"url": url, "event_types": ["model_version.created"]}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def register_versions(http: httpx.Client, name: str, count: int) -> list[str]:
    created = http.post(MLFLOW_API + "registered-models/create", json={"name": name})
    assert created.status_code == 200, created.text
    # A version's source must be a run of the key's workspace.
    experiment = http.post(MLFLOW_API + "experiments/create", json={"name": name})
    assert experiment.status_code == 200, experiment.text
    run = http.post(
        MLFLOW_API + "runs/create", json={"experiment_id": experiment.json()["experiment_id"]}
    )
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    versions = []
    for _ in range(count):
        response = http.post(
            MLFLOW_API + "model-versions/create",
            json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
        )
        assert response.status_code == 200, response.text
        versions.append(response.json()["model_version"]["version"])
    return versions


def deliveries_by_version(receiver: Receiver, path: str, secret: str) -> dict[str, set[str]]:
    """Every request to ``path``, checked against its signature: version → webhook ids."""
    verifier = Webhook(secret)
    ids: dict[str, set[str]] = defaultdict(set)
    for request in receiver.requests(path):
        payload = verifier.verify(request.body, request.headers)
        assert payload["type"] == "model_version.created"
        ids[payload["data"]["version"]].add(request.webhook_id)
    return ids


def test_each_event_is_delivered_once_with_two_dispatchers(
    topology: Topology, receiver: Receiver
) -> None:
    assert all(worker.running for worker in topology.workers)
    secret = add_endpoint(topology, receiver.url("/once"))
    name = f"LSCOR-hooks-{uuid.uuid4().hex[:8]}"
    key = topology.create_key(Scope.WRITE, "webhooks")
    with client(topology.url, str(topology.ca_bundle), key) as http:
        versions = register_versions(http, name, 20)

    received = receiver.wait_for("/once", len(versions), timeout=60, settle=2.0)
    per_id = Counter(request.webhook_id for request in received)
    assert [i for i, n in per_id.items() if n > 1] == [], "a delivery was made twice"
    ids = deliveries_by_version(receiver, "/once", secret)
    assert sorted(ids, key=int) == versions
    assert all(len(found) == 1 for found in ids.values())


@pytest.mark.reliability
def test_a_dispatcher_killed_mid_burst_loses_nothing(
    topology: Topology, receiver: Receiver
) -> None:
    # A slow receiver: the dispatchers have deliveries in flight when one is killed.
    receiver.on("/burst", always(Answer(delay=0.2)))
    secret = add_endpoint(topology, receiver.url("/burst"))
    name = f"LSCOR-burst-{uuid.uuid4().hex[:8]}"
    key = topology.create_key(Scope.WRITE, "burst")
    registered: list[str] = []

    def burst() -> None:
        with client(topology.url, str(topology.ca_bundle), key) as http:
            registered.extend(register_versions(http, name, 30))

    writer = threading.Thread(target=burst, daemon=True)
    writer.start()
    try:
        receiver.wait_for("/burst", 5, timeout=60)
        topology.workers[0].kill()
        killed_at = time.monotonic()
        writer.join(timeout=120)
        assert not writer.is_alive()
        assert len(registered) == 30
        # The survivor delivers the rest, and takes over what the killed one had claimed
        # once its claims lapse.
        deadline = time.monotonic() + 90
        while len(deliveries_by_version(receiver, "/burst", secret)) < len(registered):
            assert time.monotonic() < deadline, (
                f"{len(deliveries_by_version(receiver, '/burst', secret))} of "
                f"{len(registered)} versions delivered {time.monotonic() - killed_at:.0f} s "
                "after the kill"
            )
            time.sleep(0.2)
    finally:
        topology.restart_worker(0)
    ids = deliveries_by_version(receiver, "/burst", secret)
    assert sorted(ids, key=int) == registered
    # At least once: a delivery the killed dispatcher may have made without recording it is
    # made again, under the same webhook-id, never under a new one.
    assert all(len(found) == 1 for found in ids.values()), ids
