"""Rate limits, per gateway replica: requests per key, failed authentications per address.

Kept in process memory on purpose: a limit that needs a network round trip on every
request would cost more than the abuse it prevents. With N replicas behind a load
balancer a key's effective limit is up to N times the setting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

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
