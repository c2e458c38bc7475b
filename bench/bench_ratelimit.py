"""Cost of one per-key rate-limit decision: in memory, and shared (PostgreSQL, Redis) with a
round trip on every request (lease of 1 token) or with the default lease.

Loopback only, bounded (``--requests`` decisions per variant). Needs a PostgreSQL server
(``--postgres-url``; a scratch database is created and dropped) and Redis (``--redis-url``).
Usage: ``.venv/bin/python bench/bench_ratelimit.py [--requests 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from contextlib import ExitStack
from typing import Any

from _servers import postgres_database
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.gateway.ratelimit import (
    LocalKeyLimiter,
    PostgresBuckets,
    RedisBuckets,
    SharedKeyLimiter,
)


async def per_decision_us(limiter: Any, requests: int) -> float:
    key = "key_" + secrets.token_hex(8)
    await limiter.acquire(key)  # the bucket exists, connections are open
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(requests // 5):
            if await limiter.acquire(key):
                raise RuntimeError("refused: the bench's limit must not be reached")
        samples.append((time.perf_counter() - started) / (requests // 5) * 1e6)
    return statistics.median(samples)


async def main(args: argparse.Namespace) -> None:
    burst = 10**9
    with ExitStack() as stack:
        engine = make_engine(stack.enter_context(postgres_database(args.postgres_url)))
        stack.callback(engine.dispose)
        upgrade(engine)
        variants: dict[str, Any] = {"memory": LocalKeyLimiter(1e9, burst)}
        for rate, label in ((5.0, "every request"), (1e4, "lease of 1000")):
            variants[f"postgresql, {label}"] = SharedKeyLimiter(
                PostgresBuckets(engine), rate, burst
            )
            variants[f"redis, {label}"] = SharedKeyLimiter(
                RedisBuckets(args.redis_url, 1.0), rate, burst
            )
        print("| limiter | µs per decision (median of 5) |\n| --- | ---: |")
        for name, limiter in variants.items():
            cost = await per_decision_us(limiter, args.requests)
            print(f"| {name} | {cost:.1f} |", flush=True)
            await limiter.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args()))
