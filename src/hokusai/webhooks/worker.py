"""Background delivery work: the dispatcher loop and the periodic reconciler.

Runs inside ``hokusai serve`` (``HOKUSAI_DISPATCHER=1``, which serve sets) and in
``hokusai worker`` processes.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from sqlalchemy import Engine

from hokusai.settings import Settings
from hokusai.webhooks.dispatcher import Dispatcher, DispatcherSettings
from hokusai.webhooks.reconciler import reconcile
from hokusai.webhooks.signing import SecretBox

log = logging.getLogger("hokusai.webhooks")


def dispatcher_settings(settings: Settings) -> DispatcherSettings:
    return DispatcherSettings(
        allow_private=settings.webhook_allow_private,
        timeout=settings.webhook_timeout,
        retry_scale=settings.webhook_retry_scale,
        batch=settings.dispatch_batch,
        concurrency=settings.dispatch_concurrency,
        poll_interval=settings.dispatch_poll_interval,
        lease_seconds=settings.dispatch_lease_seconds,
    )


async def run_background(
    engine: Engine, settings: Settings, stop: anyio.Event, metrics: Any = None
) -> None:
    dispatcher = Dispatcher(
        engine, SecretBox(settings.resolved_secret), dispatcher_settings(settings), metrics
    )
    async with anyio.create_task_group() as group:
        group.start_soon(dispatcher.run, stop)
        if settings.reconcile_interval > 0:
            group.start_soon(_reconcile_forever, engine, settings, stop)


async def _reconcile_forever(engine: Engine, settings: Settings, stop: anyio.Event) -> None:
    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(reconcile, engine, settings.mlflow_url)
        except Exception as exc:  # MLflow down or restarting: try again next round
            log.warning("reconciler pass failed: %s", exc)
        with anyio.move_on_after(settings.reconcile_interval):
            await stop.wait()
