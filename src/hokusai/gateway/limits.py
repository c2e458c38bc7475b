"""Requests in flight per key: no single key can hold the whole upstream pool.

The rate limit bounds how often a key may start requests; this bounds how many it may
have open at once, which is what a slow client (or a slow artifact transfer) consumes.
The count lives in the one event loop of a gateway process, so it needs no lock.
"""

from __future__ import annotations

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError


def per_key_limit(configured: int, pool_size: int) -> int:
    """The effective limit: half the pool by default, always leaving one connection free."""
    limit = configured or max(1, pool_size // 2)
    return max(1, min(limit, pool_size - 1)) if pool_size > 1 else 1


class InFlightLimit:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def acquire(self, key_id: str) -> None:
        held = self._counts.get(key_id, 0)
        if held >= self.limit:
            raise GatewayError(
                ErrorCode.REQUEST_LIMIT_EXCEEDED,
                f"API key {key_id} already has {held} requests in flight, as many as this "
                "gateway allows one key. Wait for one to finish, then retry after the "
                "Retry-After delay.",
                headers={"Retry-After": "1"},
                reason="in_flight_limited",
            )
        self._counts[key_id] = held + 1

    def release(self, key_id: str) -> None:
        held = self._counts.get(key_id, 0) - 1
        if held > 0:
            self._counts[key_id] = held
        else:
            self._counts.pop(key_id, None)

    def held(self, key_id: str) -> int:
        return self._counts.get(key_id, 0)
