"""Following the registry changes recorded in the auth store (each store): named models are
dropped, anything the follower cannot account for empties the cache, and a store it
cannot read stops the cache from serving."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from sqlalchemy import Engine, func, select

from hokusai.db.engine import make_engine
from hokusai.db.schema import registry_changes
from hokusai.gateway.registry_changes import KEEP, ChangeFollower, record
from hokusai.gateway.resolution_cache import (
    EVERYTHING,
    CacheableRead,
    ResolutionCache,
    WriteEffect,
    cacheable_read,
)
from hokusai.timestamps import utcnow

HERE, ELSEWHERE = "this-process", "another-replica"
JSON = [(b"content-type", b"application/json")]
READY = json.dumps({"model_version": {"status": "READY"}}).encode()


def read(name: str) -> CacheableRead:
    found = cacheable_read(
        "GET", "/api/2.0/mlflow/model-versions/get", f"name={name}&version=1".encode(), "default"
    )
    assert found is not None
    return found


def followed(engine: Engine) -> tuple[ResolutionCache, ChangeFollower]:
    cache = ResolutionCache(max_age=60, max_entries=100, max_bytes=1 << 20)
    follower = ChangeFollower(engine, cache, lag_bound=60, origin=HERE)
    anyio.run(follower.poll)
    return cache, follower


def fill(cache: ResolutionCache, *names: str) -> None:
    for name in names:
        assert cache.put(read(name), cache.ticket(), 200, JSON, READY)


def cached(cache: ResolutionCache, name: str) -> bool:
    return cache.get(read(name).key) is not None


def test_changes_of_other_replicas_drop_the_models_they_name(engine: Engine) -> None:
    cache, follower = followed(engine)
    assert cache.in_sync
    fill(cache, "A", "B", "C")
    record(engine, WriteEffect(frozenset({"default/a"})), ELSEWHERE)
    record(engine, WriteEffect(frozenset({"default/b"})), ELSEWHERE)
    anyio.run(follower.poll)
    assert (cached(cache, "A"), cached(cache, "B"), cached(cache, "C")) == (False, False, True)
    anyio.run(follower.poll)  # nothing new: nothing dropped
    assert cached(cache, "C")
    record(engine, EVERYTHING, HERE)  # its own change: dropped when it was made
    anyio.run(follower.poll)
    assert cached(cache, "C")
    record(engine, EVERYTHING, ELSEWHERE)
    anyio.run(follower.poll)
    assert len(cache) == 0


def test_a_gap_in_the_record_empties_the_cache(engine: Engine) -> None:
    cache, follower = followed(engine)
    fill(cache, "A", "B")
    with engine.begin() as conn:  # a number never committed (a rolled-back insert)
        conn.execute(
            registry_changes.insert().values(
                seq=5, model="a", origin=ELSEWHERE, recorded_at=utcnow()
            )
        )
    anyio.run(follower.poll)
    assert len(cache) == 0


def test_old_rows_are_pruned_and_a_follower_that_far_behind_empties_its_cache(
    engine: Engine,
) -> None:
    cache, follower = followed(engine)
    fill(cache, "A")
    with engine.begin() as conn:
        conn.execute(
            registry_changes.insert(),
            [{"model": "x", "origin": ELSEWHERE, "recorded_at": utcnow()} for _ in range(KEEP + 5)],
        )
    record(engine, WriteEffect(frozenset({"default/y"})), ELSEWHERE)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(registry_changes)).scalar() == KEEP
    anyio.run(follower.poll)
    assert len(cache) == 0 and cache.in_sync


def test_a_store_it_cannot_read_stops_the_cache_until_it_can(
    engine: Engine, tmp_path: Path
) -> None:
    cache, follower = followed(engine)
    fill(cache, "A")
    follower.engine = make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'store.db'}")
    anyio.run(follower.poll)
    assert not cache.in_sync and len(cache) == 0
    assert not cache.put(read("A"), cache.ticket(), 200, JSON, READY)
    follower.engine = engine
    anyio.run(follower.poll)
    assert cache.in_sync
    fill(cache, "A")
