"""MLflow writes in arrival order, a few at a time, when MLflow's store wants that.

MLflow's SQLite store lets one transaction write at a time. Writers that reach MLflow
together wait inside it on SQLite's busy handler, which polls with growing sleeps and lets
a newcomer take the lock ahead of a writer that has waited long: under a burst (a hundred
registrations at once) some writes starve past the API timeout while others pass. Here
the gateway queues them instead: a write takes its turn, first come first served, before
an upstream connection is taken, and MLflow sees at most ``concurrency`` writers.

Only changes queue: reads (including POST searches) and artifact transfers, which touch
files rather than the store, go straight through. A write that waits longer than the
queue timeout is answered 503 with ``Retry-After``: it never reached MLflow, so the
client may safely send it again. The queue lives in one gateway process's event loop;
with ``--workers N`` each worker has its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from prometheus_client import Gauge

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError


def default_concurrency(backend_store_uri: str | None) -> int:
    """Writes at once for an MLflow on this store (None: an MLflow the gateway did not
    start, whose store it does not know): one on SQLite, else no limit."""
    return 1 if backend_store_uri is not None and backend_store_uri.startswith("sqlite:") else 0


class WriteQueue:
    """At most ``concurrency`` writes in MLflow at once (0: no limit)."""

    def __init__(self, concurrency: int, timeout: float, waiting: Gauge | None = None) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        # anyio's semaphore wakes its waiters in the order they came: the fairness is the point.
        self._turns = anyio.Semaphore(concurrency) if concurrency > 0 else None
        self._waiting_gauge = waiting
        self.waiting = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the write turns for the body of the ``async with``."""
        if self._turns is None:
            yield
            return
        self._count_waiting(+1)
        try:
            # Cancelled while waiting, anyio's acquire holds nothing.
            with anyio.move_on_after(self.timeout) as wait:
                await self._turns.acquire()
        finally:
            self._count_waiting(-1)
        if wait.cancelled_caught:
            raise GatewayError(
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                f"MLflow is busy with other writes: this one waited {self.timeout:g} s for its "
                "turn and was not sent. Retry after the Retry-After delay; nothing was changed.",
                headers={"Retry-After": "1"},
                reason="write_queue_timeout",
            )
        try:
            yield
        finally:
            self._turns.release()

    def _count_waiting(self, change: int) -> None:
        self.waiting += change
        if self._waiting_gauge is not None:
            self._waiting_gauge.inc(change)
