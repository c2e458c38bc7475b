"""The resolution cache in front of the real MLflow: the same answers as MLflow, served
without it, after the same refusals as ever, and never stale after a write through the
gateway; between two replicas on one PostgreSQL store, within half a second."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hokusai.keys.format import generate_key
from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    POSTGRES_ENV,
    RunningGateway,
    ServeGateway,
    auth,
    gateway_settings,
    postgres_database,
    replicas,
    start_gateway,
    store_keys,
)

pytestmark = pytest.mark.integration

MLFLOW = "/api/2.0/mlflow/"
PREFIX = "/api/mlflow" + MLFLOW
# The headers that differ between any two answers, cached or not.
PER_ANSWER = {"date", "server", "x-request-id"}


def start_in_sync(
    start: ServeGateway, home: Path, mlflow_url: str, **overrides: object
) -> RunningGateway:
    """A gateway on SQLite, started by ``start``, whose resolution cache serves (its
    follower has read the store).

    A generous replica lag: on a loaded machine the follower may look at the store late,
    and the tests that use this are about one replica (the last test measures the bound).
    """
    overrides.setdefault("resolution_cache_replica_lag", 5.0)
    settings = gateway_settings(f"sqlite:///{home / 'hokusai.db'}", mlflow_url, home, **overrides)
    gateway = start(settings)
    cache = gateway.gateway.resolution_cache
    assert cache is not None
    deadline = time.monotonic() + 10
    while not cache.in_sync:
        assert time.monotonic() < deadline, "the resolution cache never came in sync"
        time.sleep(0.02)
    return gateway


@pytest.fixture(scope="module")
def running(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    gateway = start_in_sync(
        start_gateway, tmp_path_factory.mktemp("cache-gateway"), mlflow_server.url
    )
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def writer(running: RunningGateway) -> str:
    return running.create_key(Scope.WRITE)


@pytest.fixture(scope="module")
def reader(running: RunningGateway) -> str:
    return running.create_key(Scope.READ)


def write(base: str, key: str, method: str, endpoint: str, body: dict[str, object]) -> dict:  # type: ignore[type-arg]
    response = httpx.request(method, base + PREFIX + endpoint, json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


def model_with_versions(base: str, key: str, versions: int = 2) -> str:
    name = "cache-" + uuid.uuid4().hex[:8]
    write(base, key, "POST", "registered-models/create", {"name": name})
    # A version's source must be a run of the key's workspace.
    experiment = write(base, key, "POST", "experiments/create", {"name": name})
    run = write(base, key, "POST", "runs/create", {"experiment_id": experiment["experiment_id"]})
    run_id = run["run"]["info"]["run_id"]
    for _ in range(versions):
        write(
            base,
            key,
            "POST",
            "model-versions/create",
            {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
        )
    write(
        base,
        key,
        "POST",
        "registered-models/alias",
        {"name": name, "alias": "stable", "version": "1"},
    )
    return name


def reads(name: str) -> list[str]:
    """One read of each cached endpoint (MLflow path and query)."""
    return [
        f"registered-models/get?name={name}",
        f"registered-models/alias?name={name}&alias=stable",
        f"registered-models/get-latest-versions?name={name}",
        f"model-versions/get?name={name}&version=1",
        f"model-versions/get-download-uri?name={name}&version=1",
    ]


def hits(running: RunningGateway) -> float:
    return float(running.gateway.metrics.resolution_cache_hits._value.get())


def through(running: RunningGateway, key: str, read: str) -> httpx.Response:
    return httpx.get(running.url + PREFIX + read, headers=auth(key), timeout=5)


def direct(mlflow_server: MlflowProcess, read: str) -> httpx.Response:
    return httpx.get(mlflow_server.url + MLFLOW + read, timeout=30)


def lasting(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in PER_ANSWER}


def assert_as_mlflow(
    running: RunningGateway, mlflow_server: MlflowProcess, key: str, read: str
) -> httpx.Response:
    ours, theirs = through(running, key, read), direct(mlflow_server, read)
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), read
    return ours


def test_a_cached_read_is_mlflow_s_answer_and_the_next_needs_no_mlflow(
    running: RunningGateway, mlflow_server: MlflowProcess, writer: str, reader: str
) -> None:
    name = model_with_versions(running.url, writer)
    first = {read: assert_as_mlflow(running, mlflow_server, reader, read) for read in reads(name)}
    before = hits(running)
    assert mlflow_server.pid is not None
    group = mlflow_server.pid  # MLflow runs in a process group of its own
    os.killpg(group, signal.SIGSTOP)
    try:
        second = {read: through(running, reader, read) for read in reads(name)}
        # The browser's twin paths are MLflow's same handlers: the same entries.
        twins = {
            read: httpx.get(
                f"{running.url}/api/mlflow/ajax-api/2.0/mlflow/{read}",
                headers=auth(reader),
                timeout=5,
            )
            for read in reads(name)
        }
    finally:
        os.killpg(group, signal.SIGCONT)
    assert hits(running) - before == len(second) + len(twins)
    for read, answer in [*second.items(), *twins.items()]:
        assert (answer.status_code, answer.content) == (200, first[read].content), read
        assert lasting(answer) == lasting(first[read]), read
        assert answer.headers["x-request-id"] != first[read].headers["x-request-id"]


def test_refusals_come_before_the_cache(
    running: RunningGateway, mlflow_server: MlflowProcess, writer: str, reader: str
) -> None:
    name = model_with_versions(running.url, writer, versions=1)
    revoked = running.gateway.keys.create(name="gone", owner="tests", scope=Scope.READ)
    for read in reads(name):  # cached, for the keys that may read them
        assert through(running, reader, read).status_code == 200
        assert through(running, revoked.key, read).status_code == 200
    running.gateway.keys.revoke(revoked.record.id)
    before = hits(running)
    refusals = {
        "missing": {},
        "malformed": auth("not-a-key"),
        "unknown": auth(generate_key()),
        "revoked": auth(revoked.key),
    }
    for read in reads(name):
        for reason, headers in refusals.items():
            answer = httpx.get(running.url + PREFIX + read, headers=headers, timeout=5)
            assert answer.status_code == 401, (reason, read, answer.text)
            assert answer.json()["error_code"] == "UNAUTHENTICATED", (reason, read)
    assert hits(running) == before
    assert through(running, reader, reads(name)[0]).status_code == 200
    assert hits(running) == before + 1


def test_the_rate_limit_comes_before_the_cache(
    mlflow_server: MlflowProcess, serve_gateway: ServeGateway, tmp_path: Path
) -> None:
    limited = start_in_sync(
        serve_gateway, tmp_path, mlflow_server.url, rate_limit_per_second=0.01, rate_limit_burst=5
    )
    name = model_with_versions(limited.url, limited.create_key(Scope.WRITE), versions=1)
    reader = limited.create_key(Scope.READ)
    read = f"registered-models/alias?name={name}&alias=stable"
    before = hits(limited)
    answers = [through(limited, reader, read) for _ in range(7)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 2
    assert answers[-1].json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert hits(limited) - before == 4  # the first read filled the cache


def test_a_write_through_the_gateway_is_seen_by_the_very_next_read(
    running: RunningGateway, mlflow_server: MlflowProcess, writer: str, reader: str
) -> None:
    name = model_with_versions(running.url, writer)
    alias_read = f"registered-models/alias?name={name}&alias=stable"
    version_read = f"model-versions/get?name={name}&version=1"
    model_read = f"registered-models/get?name={name}"

    def cached(read: str) -> None:
        through(running, reader, read)
        before = hits(running)
        assert through(running, reader, read).status_code == 200
        assert hits(running) == before + 1, f"{read} was not served from the cache"

    cached(alias_read)
    write(
        running.url,
        writer,
        "POST",
        "registered-models/alias",
        {"name": name, "alias": "stable", "version": "2"},
    )
    answer = assert_as_mlflow(running, mlflow_server, reader, alias_read)
    assert answer.json()["model_version"]["version"] == "2"

    cached(alias_read)
    response = httpx.request(
        "DELETE",
        running.url + PREFIX + "registered-models/alias",
        json={"name": name, "alias": "stable"},
        headers=auth(writer),
    )
    assert response.status_code == 200, response.text
    # MLflow's answer for an alias that is not set: 400 INVALID_PARAMETER_VALUE.
    assert assert_as_mlflow(running, mlflow_server, reader, alias_read).status_code == 400

    cached(version_read)
    write(
        running.url,
        writer,
        "POST",
        "model-versions/set-tag",
        {"name": name, "version": "1", "key": "stage", "value": "canary"},
    )
    answer = assert_as_mlflow(running, mlflow_server, reader, version_read)
    assert {"key": "stage", "value": "canary"} in answer.json()["model_version"]["tags"]

    cached(model_read)
    renamed = name + "-renamed"
    write(
        running.url, writer, "POST", "registered-models/rename", {"name": name, "new_name": renamed}
    )
    assert assert_as_mlflow(running, mlflow_server, reader, model_read).status_code == 404
    renamed_read = f"registered-models/get?name={renamed}"
    assert assert_as_mlflow(running, mlflow_server, reader, renamed_read).status_code == 200

    cached(renamed_read)
    response = httpx.request(
        "DELETE",
        running.url + PREFIX + "registered-models/delete",
        json={"name": renamed},
        headers=auth(writer),
    )
    assert response.status_code == 200, response.text
    assert assert_as_mlflow(running, mlflow_server, reader, renamed_read).status_code == 404


@pytest.fixture
def shared_store() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} is not set")
def test_a_write_through_one_replica_reaches_the_other_within_half_a_second(
    shared_store: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    secret = secrets.token_urlsafe(48)
    with store_keys(shared_store, secret) as keys:
        key = keys.create(name="ci", owner="tests").key

    with (
        replicas(["a", "b"], shared_store, secret, mlflow_server.url, tmp_path) as (a, b),
        httpx.Client(headers=auth(key), timeout=5) as at_b,  # kept alive: reads ms apart
    ):
        name = model_with_versions(a.url, key)
        alias_read = b.url + PREFIX + f"registered-models/alias?name={name}&alias=stable"

        def version_at_b() -> str:
            answer = at_b.get(alias_read)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["model_version"]["version"])

        # B holds the alias's answer (a second read is a hit on B's /metrics).
        deadline = time.monotonic() + 10
        while True:
            assert version_at_b() == "1"
            with contextlib.suppress(httpx.HTTPError):
                if (
                    "hokusai_resolution_cache_hits_total 0.0"
                    not in httpx.get(b.url + "/metrics").text
                ):
                    break
            assert time.monotonic() < deadline, "replica B never served from its cache"
            time.sleep(0.05)

        write(
            a.url,
            key,
            "POST",
            "registered-models/alias",
            {"name": name, "alias": "stable", "version": "2"},
        )
        answered_at = time.monotonic()
        stale_answers, stale_until = 0, 0.0
        while True:
            asked_at = time.monotonic() - answered_at
            if version_at_b() == "2":
                break
            stale_answers, stale_until = stale_answers + 1, asked_at
            assert asked_at < 3.0, "replica B still serves the old alias after 3 s"
            time.sleep(0.01)
        print(
            f"replica B: {stale_answers} stale answers, the last asked {stale_until:.3f} s "
            f"after the write; the first fresh one asked at {asked_at:.3f} s"
        )
        assert stale_until < 0.5, f"replica B served the old alias {stale_until:.3f} s later"
