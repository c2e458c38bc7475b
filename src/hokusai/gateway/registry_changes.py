"""Registry changes shared by gateway replicas through the auth store.

A replica records every registry write it proxies (``record``: the models it may have
changed, or "anything", under the name of the recording process) before its writer has
the answer. Each replica follows the changes of the others (``ChangeFollower``): a
cheap query on the primary key every ``lag_bound * 0.4`` seconds drops the cached
answers about the models named since its last look. The cache
serves only while the follower has heard from the store within ``lag_bound``, so a
change through another replica is served stale for at most ``lag_bound`` seconds; when
the store cannot be read, or rows were missed (the newest ``KEEP`` are kept), the cache
is emptied and serves nothing until the follower is back in step.

Rows are numbered in the order they become visible: on PostgreSQL each insert takes the
table's EXCLUSIVE lock (reads go on), so no transaction can commit a lower ``seq`` after
a higher one was seen; SQLite has one writer at a time. A gap in the numbers is then
either a rolled-back insert or rows pruned before they were read, and the follower
treats both as "anything may have changed".

The registry events of the webhook outbox are not used for this: only some registry
writes produce events (not a rename, a description or a model's tags), and their numbers
are not committed in order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import anyio
from sqlalchemy import Engine, delete, func, select, text

from hokusai.db.schema import registry_changes
from hokusai.gateway.resolution_cache import ResolutionCache, WriteEffect
from hokusai.timestamps import utcnow
from hokusai.workspaces.records import DEFAULT_WORKSPACE

log = logging.getLogger("hokusai.gateway.registry_changes")

KEEP = 10_000  # rows kept: a follower further behind than this empties its cache
BATCH = 500  # rows read at once: a follower that reads a full batch empties its cache


def new_origin() -> str:
    """The name one gateway process records its changes under."""
    return uuid.uuid4().hex


def record(engine: Engine, effect: WriteEffect, origin: str) -> None:
    """Record a registry write for the other replicas (one transaction)."""
    if effect.none:
        return
    now = utcnow()
    # An index is ``workspace/name`` (resolution_cache.model_index): kept as two columns.
    scoped: list[tuple[str | None, str | None]] = (
        [(None, None)]
        if effect.everything
        else [(ws, name) for ws, _, name in (m.partition("/") for m in sorted(effect.models))]
    )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE registry_changes IN EXCLUSIVE MODE"))
        conn.execute(
            registry_changes.insert(),
            [
                {"workspace": ws, "model": name, "origin": origin, "recorded_at": now}
                for ws, name in scoped
            ],
        )
        newest = conn.execute(select(func.max(registry_changes.c.seq))).scalar_one()
        conn.execute(delete(registry_changes).where(registry_changes.c.seq <= newest - KEEP))


def newest_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(registry_changes.c.seq))).scalar() or 0)


def changes_after(engine: Engine, seq: int) -> list[tuple[int, str | None, str]]:
    """Up to ``BATCH`` recorded changes after ``seq``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                registry_changes.c.seq,
                registry_changes.c.workspace,
                registry_changes.c.model,
                registry_changes.c.origin,
            )
            .where(registry_changes.c.seq > seq)
            .order_by(registry_changes.c.seq)
            .limit(BATCH)
        ).all()
    return [
        (
            int(row.seq),
            None if row.model is None else f"{row.workspace or DEFAULT_WORKSPACE}/{row.model}",
            row.origin,
        )
        for row in rows
    ]


class ChangeFollower:
    """Keeps one replica's resolution cache in step with the changes of all replicas."""

    def __init__(
        self,
        engine: Engine,
        cache: ResolutionCache,
        lag_bound: float,
        origin: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.origin = origin
        self.cache = cache
        self.lag_bound = lag_bound
        self.interval = lag_bound * 0.4
        self._clock = clock
        self._seen: int | None = None  # the newest change applied; None: not read yet
        self._failing = False

    async def run(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with anyio.move_on_after(self.interval):
                await stop.wait()

    async def poll(self) -> None:
        """Look at the store once; the cache serves until ``lag_bound`` after this look
        began if it succeeded, and is emptied and stops serving if it failed."""
        started = self._clock()
        try:
            if self._seen is None:
                # Nothing is cached before the first look: only the newest number matters.
                self._seen = await anyio.to_thread.run_sync(newest_seq, self.engine)
            else:
                self._apply(await anyio.to_thread.run_sync(changes_after, self.engine, self._seen))
        except Exception as exc:  # any failure to read the store means: cannot tell
            if not self._failing:
                log.warning(
                    "cannot read registry changes from the auth store (%s): the resolution "
                    "cache serves nothing until it can",
                    type(exc).__name__,
                )
                self._failing = True
                self.cache.out_of_sync()
            return
        if self._failing:
            log.info("registry changes readable again: the resolution cache serves again")
            self._failing = False
        self.cache.in_sync_until(started + self.lag_bound)

    def _apply(self, changes: list[tuple[int, str | None, str]]) -> None:
        assert self._seen is not None
        everything = len(changes) >= BATCH
        models: set[str] = set()
        expected = self._seen + 1
        for seq, model, origin in changes:
            if seq != expected:
                everything = True
            elif origin == self.origin:
                pass  # this process dropped those answers before its writer had the answer
            elif model is None:
                everything = True
            else:
                models.add(model)
            expected = seq + 1
        if changes:
            self._seen = changes[-1][0]
        if everything:
            self.cache.invalidate_all()
        elif models:
            self.cache.invalidate_models(models)
