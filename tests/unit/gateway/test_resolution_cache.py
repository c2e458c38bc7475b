"""The resolution cache on its own: which reads it keys and how, what it keeps, its bounds
(entries, bytes, age), and what a write drops."""

from __future__ import annotations

import json

import pytest

from hokusai.gateway.policy import ROUTES, Hidden
from hokusai.gateway.resolution_cache import (
    CACHED_READS,
    EVERYTHING,
    NOTHING,
    CacheableRead,
    ResolutionCache,
    WriteEffect,
    cacheable_read,
    write_effect,
)
from hokusai.keys.scopes import Scope

V2 = "/api/2.0/mlflow"
JSON = [(b"content-type", b"application/json")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def version(number: int, status: str = "READY", name: str = "LSCOR") -> bytes:
    return json.dumps(
        {"model_version": {"name": name, "version": str(number), "status": status}}
    ).encode()


def read(name: str = "LSCOR", number: int = 1) -> CacheableRead:
    found = cacheable_read(
        "GET", f"{V2}/model-versions/get", f"name={name}&version={number}".encode(), "default"
    )
    assert found is not None
    return found


def in_sync_cache(clock: Clock, **bounds: int | float) -> ResolutionCache:
    settings: dict[str, float] = {"max_age": 5.0, "max_entries": 100, "max_bytes": 1 << 20}
    settings.update(bounds)
    cache = ResolutionCache(
        max_age=settings["max_age"],
        max_entries=int(settings["max_entries"]),
        max_bytes=int(settings["max_bytes"]),
        clock=clock,
    )
    cache.in_sync_until(float("inf"))
    return cache


def fill(cache: ResolutionCache, entry: CacheableRead, body: bytes | None = None) -> bool:
    return cache.put(entry, cache.ticket(), 200, JSON, body or version(1))


# ---- keys ------------------------------------------------------------------------------


def test_the_key_is_the_handler_path_and_the_query_sorted_by_parameter() -> None:
    one = cacheable_read(
        "GET", f"{V2}/registered-models/alias", b"name=LSCOR&alias=production", "default"
    )
    two = cacheable_read(
        "GET",
        "/ajax-api/2.0/mlflow/registered-models/alias",
        b"alias=production&name=LSCOR",
        "default",
    )
    assert one is not None and two is not None
    assert one.key == two.key
    assert one.key.query == (("alias", "production"), ("name", "LSCOR"))
    assert one.model == "default/lscor"
    # A list parameter keeps its values in the order given.
    latest = cacheable_read(
        "GET",
        f"{V2}/registered-models/get-latest-versions",
        b"stages=b&name=M&stages=a",
        "default",
    )
    assert latest is not None
    assert latest.key.query == (("name", "M"), ("stages", "b"), ("stages", "a"))


@pytest.mark.parametrize(
    ("method", "path", "query", "_"),
    [
        ("POST", f"{V2}/registered-models/get-latest-versions", b"name=M", []),
        ("HEAD", f"{V2}/registered-models/get", b"name=M", []),
        ("GET", f"{V2}/registered-models/search", b"filter=x", []),
        ("GET", f"{V2}/registered-models/get", b"", []),  # no model: MLflow's 400
        ("GET", f"{V2}/registered-models/get", b"name=A&name=B", []),  # MLflow takes A
        ("GET", f"{V2}/model-versions/get", b"name=M&version=1&version=2", []),
        ("GET", f"{V2}/registered-models/get", "name=é".encode(), []),  # raw UTF-8
        ("GET", f"{V2}/registered-models/get", b"name=%FF", []),  # not UTF-8
    ],
)
def test_reads_it_does_not_answer(
    method: str, path: str, query: bytes, _: list[tuple[bytes, bytes]]
) -> None:
    assert cacheable_read(method, path, query, "default") is None


def test_two_workspaces_answers_are_apart() -> None:
    """Two teams may both have LSCOR: their answers and their invalidations differ."""
    a = cacheable_read("GET", f"{V2}/registered-models/get", b"name=LSCOR", "team-a")
    b = cacheable_read("GET", f"{V2}/registered-models/get", b"name=LSCOR", "team-b")
    assert a is not None and b is not None
    assert a.key != b.key
    assert (a.model, b.model) == ("team-a/lscor", "team-b/lscor")
    write = write_effect(f"{V2}/registered-models/alias", b'{"name": "LSCOR"}', b"", "team-b")
    assert write.models == {"team-b/lscor"}


def test_every_cached_read_is_a_read_route_of_the_policy() -> None:
    reads = {r.template for r in ROUTES if r.access is Scope.READ and "GET" in r.methods}
    assert CACHED_READS.issubset(reads)


# ---- what a write drops -------------------------------------------------------------------


def test_a_registry_write_drops_the_models_it_names() -> None:
    alias = write_effect(
        f"{V2}/registered-models/alias", b'{"name": "LSCOR", "alias": "p"}', b"", "default"
    )
    assert alias == WriteEffect(frozenset({"default/lscor"}))
    rename = write_effect(
        f"{V2}/registered-models/rename", b'{"name": "Old", "new_name": "New"}', b"", "default"
    )
    assert rename.models == {"default/old", "default/new"}
    by_query = write_effect(f"{V2}/registered-models/delete", b"", b"name=Gone", "default")
    assert by_query.models == {"default/gone"}
    ajax = write_effect(
        "/ajax-api/2.0/mlflow/model-versions/set-tag", b'{"name": "M"}', b"", "default"
    )
    assert ajax.models == {"default/m"}


@pytest.mark.parametrize(
    ("body", "query"),
    [(b"", b""), (b"not json", b"name=M"), (b"[1]", b""), (b'{"name": 3}', b""), (b"{}", b"")],
)
def test_a_registry_write_whose_model_cannot_be_told_drops_everything(
    body: bytes, query: bytes
) -> None:
    assert write_effect(f"{V2}/model-versions/create", body, query, "default") == EVERYTHING


def test_writes_outside_the_registry() -> None:
    assert write_effect(f"{V2}/runs/log-metric", b'{"run_id": "r"}', b"", "default") == NOTHING
    assert (
        write_effect("/api/2.0/mlflow-artifacts/artifacts/1/a/model.pkl", b"", b"", "default")
        == NOTHING
    )
    # Workspaces, or anything not known to leave the registry alone: everything.
    assert write_effect("/api/3.0/mlflow/workspaces/team", b"", b"", "default") == EVERYTHING
    assert write_effect("/api/2.0/mlflow/something-new", b"", b"", "default") == EVERYTHING


def test_every_write_route_of_the_policy_has_a_known_effect() -> None:
    """A route added to the policy drops everything unless it is listed as unrelated: this
    names the registry-looking ones so that nobody lists one as unrelated by mistake."""
    for route in ROUTES:
        if route.access is Scope.READ or isinstance(route.access, Hidden):
            continue
        effect = write_effect(route.template, b'{"name": "M"}', b"", "default")
        registry = "registered-models" in route.template or "model-versions" in route.template
        if registry:
            assert effect.models == {"default/m"}, route.template
        elif "workspaces" in route.template:
            assert effect == EVERYTHING


# ---- what it keeps ----------------------------------------------------------------------


def test_only_plain_json_200_answers_with_ready_versions_are_kept() -> None:
    clock = Clock()
    cache = in_sync_cache(clock)
    entry = read()
    assert not cache.put(entry, cache.ticket(), 404, JSON, b'{"error_code": "X"}')
    assert not cache.put(entry, cache.ticket(), 200, JSON, version(1, "PENDING_REGISTRATION"))
    assert not cache.put(entry, cache.ticket(), 200, [(b"content-type", b"text/html")], b"{}")
    gzip = [*JSON, (b"content-encoding", b"gzip")]
    assert not cache.put(entry, cache.ticket(), 200, gzip, version(1))
    pending_latest = json.dumps(
        {"registered_model": {"name": "M", "latest_versions": [{"status": "PENDING"}]}}
    ).encode()
    assert not cache.put(entry, cache.ticket(), 200, JSON, pending_latest)
    assert cache.get(entry.key) is None
    assert fill(cache, entry)
    answer = cache.get(entry.key)
    assert answer is not None
    assert (answer.status, answer.headers, answer.body) == (200, JSON, version(1))


def test_a_fill_that_raced_an_invalidation_is_dropped() -> None:
    cache = in_sync_cache(Clock())
    entry = read()
    ticket = cache.ticket()  # the read goes to MLflow...
    cache.invalidate_models({"some-other-model"})  # ...a write lands meanwhile
    assert not cache.put(entry, ticket, 200, JSON, version(1))
    assert cache.get(entry.key) is None


def test_out_of_sync_it_neither_serves_nor_keeps() -> None:
    clock = Clock()
    cache = in_sync_cache(clock)
    entry = read()
    assert fill(cache, entry)
    cache.in_sync_until(clock.now + 0.5)
    clock.now += 0.5  # the follower has not heard from the store in time
    assert cache.get(entry.key) is None
    assert not fill(cache, read(number=2))
    cache.in_sync_until(clock.now + 0.5)
    assert cache.get(entry.key) is not None  # nothing was missed: the entry still holds
    cache.out_of_sync()  # the store could not be read: everything goes
    cache.in_sync_until(clock.now + 0.5)
    assert cache.get(entry.key) is None


# ---- bounds -----------------------------------------------------------------------------


def test_entries_older_than_the_max_age_are_not_served() -> None:
    clock = Clock()
    cache = in_sync_cache(clock, max_age=2.0)
    entry = read()
    assert fill(cache, entry)
    clock.now += 1.99
    assert cache.get(entry.key) is not None
    clock.now += 0.01
    assert cache.get(entry.key) is None
    assert len(cache) == 0 and cache.bytes == 0


def test_the_entry_bound_evicts_the_least_recently_used() -> None:
    cache = in_sync_cache(Clock(), max_entries=3)
    entries = [read(number=n) for n in range(1, 5)]
    for entry in entries[:3]:
        assert fill(cache, entry)
    assert cache.get(entries[0].key) is not None  # 1 is now the most recently used
    assert fill(cache, entries[3])
    assert len(cache) == 3
    assert cache.get(entries[1].key) is None  # 2 was the least recently used
    assert all(cache.get(e.key) is not None for e in (entries[0], entries[2], entries[3]))


def test_the_byte_bound_holds_and_an_oversized_answer_is_not_kept() -> None:
    body = version(1)
    size = len(body) + sum(len(k) + len(v) for k, v in JSON)
    cache = in_sync_cache(Clock(), max_bytes=size * 2 + size // 2)
    entries = [read(number=n) for n in range(1, 6)]
    for entry in entries:
        assert fill(cache, entry, body)
        assert cache.bytes <= size * 2 + size // 2
    assert len(cache) == 2
    assert [cache.get(e.key) is not None for e in entries] == [False, False, False, True, True]
    big = read(name="big")
    assert not fill(cache, big, version(1) + b" " * (size * 3))
    assert len(cache) == 2


def test_invalidating_a_model_drops_its_answers_only() -> None:
    cache = in_sync_cache(Clock())
    lscor = [read("LSCOR", 1), read("LSCOR", 2)]
    other = read("Other", 1)
    for entry in [*lscor, other]:
        assert fill(cache, entry)
    cache.invalidate(
        write_effect(f"{V2}/registered-models/alias", b'{"name": "lscor"}', b"", "default")
    )
    assert all(cache.get(e.key) is None for e in lscor)
    assert cache.get(other.key) is not None
    cache.invalidate(EVERYTHING)
    assert len(cache) == 0 and cache.bytes == 0
