"""The shared token buckets on the real stores (PostgreSQL, Redis): two limiters, as two
replicas with their own connections, never admit more together than one bucket holds;
the bucket refills at the rate, on the store's clock."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.gateway.ratelimit import PostgresBuckets, RedisBuckets, SharedKeyLimiter
from tests.helpers import free_port

REDIS_URL = os.environ.get("HOKUSAI_TEST_REDIS_URL")  # read before the autouse fixture


@pytest.fixture(params=["postgres", "redis"])
def two_replicas_buckets(request: pytest.FixtureRequest, store_url: str) -> Iterator[list[Any]]:
    """Two independent bucket stores on the same backend (each its own engine or client)."""
    if not store_url.startswith("postgresql"):
        pytest.skip("the shared buckets live in PostgreSQL or Redis")
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("HOKUSAI_TEST_REDIS_URL is not set")
        yield [RedisBuckets(REDIS_URL, 1.0), RedisBuckets(REDIS_URL, 1.0)]
        return
    engines = [make_engine(store_url), make_engine(store_url)]
    upgrade(engines[0])
    try:
        yield [PostgresBuckets(engine) for engine in engines]
    finally:
        for engine in engines:
            engine.dispose()


def test_two_limiters_share_one_bucket(two_replicas_buckets: list[Any]) -> None:
    async def scenario() -> tuple[list[float], list[float], int]:
        rate, burst = 0.5, 30  # lease 1: the bucket alone decides
        a, b = (SharedKeyLimiter(buckets, rate, burst) for buckets in two_replicas_buckets)
        key = "key_" + secrets.token_hex(8)
        waits = [await limiter.acquire(key) for limiter in (a, b) * 20]
        other = await a.acquire("key_" + secrets.token_hex(8))
        admitted_other = 1 if other == 0 else 0
        refused = [w for w in waits if w > 0]
        for limiter in (a, b):
            await limiter.aclose()
        return waits, refused, admitted_other

    waits, refused, admitted_other = asyncio.run(scenario())
    assert waits.count(0.0) == 30, waits  # the burst, over both replicas together
    assert len(refused) == 10 and all(0 < w <= 2.0 for w in refused), refused
    assert admitted_other == 1  # another key has its own bucket


def test_leased_tokens_never_exceed_the_bucket(two_replicas_buckets: list[Any]) -> None:
    async def scenario() -> tuple[int, float, int]:
        rate, burst = 100.0, 50  # lease of 10 tokens at a time
        a, b = (SharedKeyLimiter(buckets, rate, burst) for buckets in two_replicas_buckets)
        assert a.lease_size == 10
        key = "key_" + secrets.token_hex(8)
        started = time.monotonic()
        waits = await asyncio.gather(*(limiter.acquire(key) for limiter in (a, b) * 100))
        elapsed = time.monotonic() - started
        for limiter in (a, b):
            await limiter.aclose()
        return list(waits).count(0.0), elapsed, len(waits)

    admitted, elapsed, sent = asyncio.run(scenario())
    # On its own each would admit its whole burst and more; together, the bucket's content.
    assert admitted <= 50 + 100 * elapsed, (admitted, elapsed)
    assert admitted >= 50 and sent == 200


def test_an_unanswering_store_falls_back_to_the_local_bucket() -> None:
    class Counted:
        def __init__(self) -> None:
            self.count = 0
            self.rate_limit_fallbacks = self

        def inc(self) -> None:
            self.count += 1

    async def scenario() -> tuple[list[float], int]:
        metrics = Counted()
        # A port where nothing listens: the connection is refused at once.
        nobody = f"redis://127.0.0.1:{free_port()}/0"
        limiter = SharedKeyLimiter(RedisBuckets(nobody, 1.0), 0.01, 3, metrics)
        waits = [await limiter.acquire("key_x") for _ in range(5)]
        await limiter.aclose()
        return waits, metrics.count

    waits, fallbacks = asyncio.run(scenario())
    assert waits[:3] == [0.0, 0.0, 0.0] and all(w > 0 for w in waits[3:]), waits
    assert fallbacks == 5
