"""The dispatcher: takes due deliveries from the outbox, sends them, records the outcome.

Runs as a task inside ``hokusai serve`` or in ``hokusai worker`` processes; any number
can run side by side (see ``outbox.claim_due``). Retries follow Svix's schedule,
compressible by ``HOKUSAI_WEBHOOK_RETRY_SCALE`` for tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import anyio
from sqlalchemy import Engine

from hokusai.db.engine import retry_on_disconnect
from hokusai.webhooks import outbox
from hokusai.webhooks.delivery import AttemptResult, new_session, send
from hokusai.webhooks.signing import SecretBox, signing_secrets

log = logging.getLogger("hokusai.webhooks")

# Seconds before each attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
SVIX_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True)
class DispatcherSettings:
    """What one dispatcher works with; built from :class:`hokusai.settings.Settings` by
    ``worker.dispatcher_settings`` (the defaults here are for tests that build one)."""

    allow_private: bool = False
    timeout: float = 10.0
    retry_scale: float = 1.0
    batch: int = 200
    concurrency: int = 64
    poll_interval: float = 0.1
    # How long a claim is held; None: long enough for any round, see ``lease``.
    lease_seconds: float | None = None

    @property
    def schedule(self) -> list[float]:
        return [s * self.retry_scale for s in SVIX_SCHEDULE]

    @property
    def lease(self) -> timedelta:
        """A round starts attempts for one timeout, and each attempt waits for at most
        ``batch / concurrency`` others and lasts at most one timeout: the lease outlasts
        that, with room for the store. A dispatcher that dies holds its claims no longer."""
        if self.lease_seconds is not None:
            return timedelta(seconds=self.lease_seconds)
        waves = -(-self.batch // self.concurrency)
        return timedelta(seconds=(waves + 1) * self.timeout + 10.0)


@dataclass(frozen=True)
class RoundTimings:
    """Where one dispatch round's wall time went, in seconds: what a round observer is
    given after every round, an empty one (nothing due) included."""

    claimed: int
    attempted: int
    claim: float
    # Summed over the round's attempts, which run concurrently: it includes their waiting.
    attempts: float
    record: float
    release: float
    whole_round: float


# Told the timings of every round (a profiler, a benchmark); called on the dispatcher's
# event loop, so it must return at once.
RoundObserver = Callable[[RoundTimings], None]


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        box: SecretBox,
        settings: DispatcherSettings,
        metrics: Any = None,
        *,
        observer: RoundObserver | None = None,
    ) -> None:
        self.engine = engine
        self.box = box
        self.settings = settings
        self.metrics = metrics
        # None: no attempt is timed and no timings are built.
        self.observer = observer
        self._client: aiohttp.ClientSession | None = None

    async def run(self, stop: anyio.Event) -> None:
        """Deliver until ``stop`` is set."""
        async with new_session(self.settings.concurrency) as client:
            self._client = client
            while not stop.is_set():
                try:
                    sent = await self.run_once()
                except Exception:  # a store hiccup must not end delivery for good
                    log.exception("dispatch round failed")
                    sent = 0
                if not sent:
                    with anyio.move_on_after(self.settings.poll_interval):
                        await stop.wait()

    async def run_once(self) -> int:
        """One round: claim, send concurrently, record. The number of attempts made."""
        round_started = time.perf_counter()
        claimed = await anyio.to_thread.run_sync(
            retry_on_disconnect,
            lambda: outbox.claim_due(
                self.engine,
                limit=self.settings.batch,
                lease=self.settings.lease,
            ),
        )
        claimed_at = time.perf_counter()
        if not claimed:
            if self.observer is not None:
                claim = claimed_at - round_started
                self.observer(RoundTimings(0, 0, claim, 0.0, 0.0, 0.0, claim))
            return 0
        started = time.monotonic()
        client = self._client or new_session(self.settings.concurrency)
        limit = asyncio.Semaphore(self.settings.concurrency)
        attempt_seconds = 0.0

        async def attempt(item: outbox.Claimed) -> tuple[outbox.Claimed, AttemptResult]:
            nonlocal attempt_seconds
            async with limit:
                if self.observer is None:
                    return item, await self.attempt(client, item)
                attempt_started = time.perf_counter()
                result = await self.attempt(client, item)
                attempt_seconds += time.perf_counter() - attempt_started
                return item, result

        async def one_by_one(
            items: list[outbox.Claimed],
        ) -> list[tuple[outbox.Claimed, AttemptResult]]:
            done: list[tuple[outbox.Claimed, AttemptResult]] = []
            for item in items:
                # Once the round has run for a timeout, the rest of the lane is given back
                # for the next round (still first in line): a round stays within its lease.
                if done and time.monotonic() - started > self.settings.timeout:
                    break
                done.append(await attempt(item))
            return done

        # A model's events reach an endpoint in the order they were emitted (``claimed`` is
        # in event order): one after the other per endpoint and model, the rest concurrently.
        lanes: dict[tuple[Any, ...], list[outbox.Claimed]] = {}
        for item in claimed:
            lane = (item.endpoint["id"], item.model_name or item.event_id)
            lanes.setdefault(lane, []).append(item)
        done = await asyncio.gather(*(one_by_one(items) for items in lanes.values()))
        outcomes = [outcome for lane_outcomes in done for outcome in lane_outcomes]
        if client is not self._client:
            await client.close()
        sent_at = time.perf_counter()
        # The attempts were made: losing their record to a dropped connection would send
        # them again once the lease ends.
        await anyio.to_thread.run_sync(
            retry_on_disconnect,
            lambda: outbox.record_attempts(self.engine, list(outcomes), self.settings.schedule),
        )
        recorded_at = time.perf_counter()
        attempted = {item.delivery_id for item, _ in outcomes}
        unsent = [item for item in claimed if item.delivery_id not in attempted]
        if unsent:
            await anyio.to_thread.run_sync(outbox.release, self.engine, unsent)
        released_at = time.perf_counter()
        if self.metrics is not None:
            for item, result in outcomes:
                outcome = (
                    "delivered"
                    if result.delivered
                    else "gone"
                    if result.gone
                    else "dead"
                    if item.attempts >= len(self.settings.schedule)
                    else "failed"
                )
                self.metrics.webhook_deliveries.labels(outcome).inc()
        if self.observer is not None:
            self.observer(
                RoundTimings(
                    claimed=len(claimed),
                    attempted=len(outcomes),
                    claim=claimed_at - round_started,
                    attempts=attempt_seconds,
                    record=recorded_at - sent_at,
                    release=released_at - recorded_at,
                    whole_round=time.perf_counter() - round_started,
                )
            )
        return len(outcomes)

    async def attempt(self, client: aiohttp.ClientSession, item: outbox.Claimed) -> AttemptResult:
        """One delivery attempt, whatever happens: a failure of any kind (a secret that no
        longer opens, an exception nobody foresaw) is this delivery's recorded outcome and
        never reaches the round, where it would stall every other delivery."""
        started = time.perf_counter()
        try:
            return await send(
                client,
                url=item.endpoint["url"],
                msg_id=item.event_id,
                body=item.payload,
                secrets_=signing_secrets(self.box, item.endpoint),
                allow_private=self.settings.allow_private,
                timeout=self.settings.timeout,
            )
        except Exception as exc:
            log.exception(
                "delivery attempt failed unexpectedly",
                extra={"fields": {"delivery_id": item.delivery_id}},
            )
            return AttemptResult(
                None,
                int((time.perf_counter() - started) * 1000),
                None,
                f"unexpected {type(exc).__name__}: {exc}"[:300],
            )
