"""Rate limits: requests per key (shared by every replica), failed authentications per address.

The per-key limit is one token bucket per key for the whole deployment when the replicas
share something to keep it in: Redis when ``HOKUSAI_REDIS_URL`` is set, else the auth store
when it is PostgreSQL. A round trip on every request would cost more than the abuse it
prevents, so a replica takes a *lease* of several tokens at once (a tenth of a second of the
rate, ``LEASE_SECONDS``) and spends it locally: one round trip per lease, and the sum over
all replicas never exceeds what the shared bucket granted. With SQLite (one replica) the
bucket stays in memory.

A shared store that does not answer must not take the gateway down: the replica then limits
on its own (the in-memory bucket, so at most N times the setting across N replicas), logs
that once, counts every such decision in ``hokusai_rate_limit_fallbacks`` and tries the
store again after ``RETRY_SHARED_AFTER`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from sqlalchemy import Engine, text

log = logging.getLogger("hokusai.gateway")

_MAX_TRACKED = 100_000  # bound on memory under a flood of distinct keys or addresses


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """``rate`` requests per second sustained, ``burst`` at once, per identity."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, identity: str, now: float | None = None) -> float:
        """Take one token; return 0 when allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(identity)
        if bucket is None:
            if len(self._buckets) >= _MAX_TRACKED:
                self._buckets.clear()
            bucket = self._buckets[identity] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


class LocalKeyLimiter:
    """The per-key limit of a single replica (SQLite store, no Redis)."""

    shared = "local"

    def __init__(self, rate: float, burst: int) -> None:
        self.bucket = TokenBucket(rate, burst)

    async def acquire(self, identity: str) -> float:
        return self.bucket.acquire(identity)

    async def aclose(self) -> None:
        pass


class SharedBuckets(Protocol):
    """Where the shared token buckets live. ``take`` removes up to ``wanted`` whole tokens
    from ``identity``'s bucket atomically and returns (granted, tokens left)."""

    name: str

    async def take(
        self, identity: str, wanted: int, rate: float, burst: int
    ) -> tuple[int, float]: ...

    async def aclose(self) -> None: ...


# Refill, take, store: one statement, under the row's lock, on the database's clock (every
# replica's request meets the same time). A key's first request creates its bucket full.
_TAKE_SQL = text(
    """
    INSERT INTO rate_limit_buckets AS b (key_id, tokens, granted, updated_at)
    VALUES (:key, :burst - LEAST(:wanted, :burst), LEAST(:wanted, :burst), statement_timestamp())
    ON CONFLICT (key_id) DO UPDATE SET
        granted = LEAST(:wanted, FLOOR(LEAST(:burst, b.tokens
            + GREATEST(0, EXTRACT(EPOCH FROM statement_timestamp() - b.updated_at)) * :rate))),
        tokens = LEAST(:burst, b.tokens
            + GREATEST(0, EXTRACT(EPOCH FROM statement_timestamp() - b.updated_at)) * :rate)
            - LEAST(:wanted, FLOOR(LEAST(:burst, b.tokens
            + GREATEST(0, EXTRACT(EPOCH FROM statement_timestamp() - b.updated_at)) * :rate))),
        updated_at = statement_timestamp()
    RETURNING granted, tokens
    """
)


class PostgresBuckets:
    """Buckets in the auth store's ``rate_limit_buckets`` table."""

    name = "postgresql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def take(self, identity: str, wanted: int, rate: float, burst: int) -> tuple[int, float]:
        def run() -> tuple[int, float]:
            with self.engine.begin() as conn:
                row = conn.execute(
                    _TAKE_SQL,
                    {"key": identity, "wanted": wanted, "rate": rate, "burst": burst},
                ).one()
            return int(row.granted), float(row.tokens)

        # Abandoned on timeout: a store that hangs costs a thread for a while, not a request.
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)

    async def aclose(self) -> None:
        pass


# The same bucket in Redis, as one script (atomic there), on Redis's clock. The key expires
# once the bucket would be full again, so idle keys cost nothing.
_TAKE_LUA = """
local rate, burst, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.min(86400000, math.ceil((burst - tokens) / rate * 1000) + 1000))
return {granted, tostring(tokens)}
"""


class RedisBuckets:
    """Buckets in Redis (``HOKUSAI_REDIS_URL``), one hash per key."""

    name = "redis"
    PREFIX = "hokusai:ratelimit:"

    def __init__(self, url: str, timeout: float) -> None:
        import redis.asyncio as redis_asyncio

        self.client = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.script = self.client.register_script(_TAKE_LUA)

    async def take(self, identity: str, wanted: int, rate: float, burst: int) -> tuple[int, float]:
        granted, tokens = await self.script(
            keys=[self.PREFIX + identity], args=[rate, burst, wanted]
        )
        return int(granted), float(tokens)

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass
class _Lease:
    tokens: int
    expires: float
    denied_until: float = 0.0


class SharedKeyLimiter:
    """The per-key limit of every replica together: leases from ``SharedBuckets``."""

    LEASE_SECONDS = 0.1  # a lease holds this much of a second's rate
    LEASE_TTL = 1.0  # unspent leased tokens are dropped after this (the key moved elsewhere)
    TIMEOUT = 1.0  # a shared store slower than this is treated as down
    RETRY_SHARED_AFTER = 5.0

    def __init__(
        self, buckets: SharedBuckets, rate: float, burst: int, metrics: Any = None
    ) -> None:
        self.buckets = buckets
        self.shared = buckets.name
        self.rate = rate
        self.burst = burst
        self.lease_size = max(1, min(burst, math.floor(rate * self.LEASE_SECONDS)))
        self.metrics = metrics
        self.fallback = TokenBucket(rate, burst)
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._down_until = 0.0
        self._down = False

    async def acquire(self, identity: str) -> float:
        """0 when allowed, else the seconds to wait. Usually no I/O at all."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        lease = self._leases.get(identity)
        if lease is not None:
            if lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                return 0.0
            if now < lease.denied_until:  # the store just said no: no round trip per 429
                return lease.denied_until - now
        if now < self._down_until:
            return self._local(identity)
        lock = self._locks.get(identity)
        if lock is None:
            if len(self._locks) >= _MAX_TRACKED:
                self._locks.clear()
                self._leases.clear()
            lock = self._locks[identity] = asyncio.Lock()
        async with lock:
            # Another request of this key may have taken a lease while this one waited.
            lease = self._leases.get(identity)
            now = time.monotonic()
            if lease is not None and lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                return 0.0
            try:
                with anyio.fail_after(self.TIMEOUT):
                    granted, left = await self.buckets.take(
                        identity, self.lease_size, self.rate, self.burst
                    )
            except Exception as exc:  # whatever broke, the gateway keeps limiting on its own
                self._store_failed(exc)
                return self._local(identity)
            self._store_answered()
            if granted <= 0:
                wait = (1 - left) / self.rate
                self._leases[identity] = _Lease(0, 0.0, now + wait)
                return wait
            self._leases[identity] = _Lease(granted - 1, now + self.LEASE_TTL)
            return 0.0

    def _local(self, identity: str) -> float:
        if self.metrics is not None:
            self.metrics.rate_limit_fallbacks.inc()
        return self.fallback.acquire(identity)

    def _store_failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.RETRY_SHARED_AFTER
        if not self._down:
            self._down = True
            log.warning(
                "shared rate limit store (%s) unreachable (%s); limiting per replica until "
                "it answers again",
                self.shared,
                type(exc).__name__,
            )

    def _store_answered(self) -> None:
        if self._down:
            self._down = False
            log.warning("shared rate limit store (%s) answers again", self.shared)

    async def aclose(self) -> None:
        await self.buckets.aclose()


KeyLimiter = LocalKeyLimiter | SharedKeyLimiter


def key_limiter(settings: Any, engine: Engine, metrics: Any = None) -> KeyLimiter:
    """The per-key limiter for this deployment: Redis if configured, else PostgreSQL if the
    auth store is PostgreSQL, else in memory."""
    rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
    if settings.redis_url:
        buckets: SharedBuckets = RedisBuckets(settings.redis_url, SharedKeyLimiter.TIMEOUT)
    elif engine.dialect.name == "postgresql":
        buckets = PostgresBuckets(engine)
    else:
        return LocalKeyLimiter(rate, burst)
    return SharedKeyLimiter(buckets, rate, burst, metrics)


class FailureWindow:
    """Counts failures per address in fixed one-minute windows."""

    WINDOW = 60.0

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._windows: dict[str, tuple[float, int]] = {}

    def blocked_for(self, address: str, now: float | None = None) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        if self.limit <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        start, count = self._windows.get(address, (now, 0))
        if now - start >= self.WINDOW:
            return 0.0
        return max(0.0, start + self.WINDOW - now) if count >= self.limit else 0.0

    def record_failure(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        start, count = self._windows.get(address, (now, 0))
        if now - start >= self.WINDOW:
            start, count = now, 0
        if len(self._windows) >= _MAX_TRACKED:
            self._windows.clear()
        self._windows[address] = (start, count + 1)


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
