"""Fixtures of the webhook tests: a loopback receiver, and gateways that deliver to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway, gateway_settings, start_gateway
from tests.webhooks.receiver import Receiver, running_receiver
from tests.webhooks.support import Hooks, MakeHooks

# Svix's schedule (0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) times this: a delivery goes
# from its first attempt to the dead letter in about 10 seconds.
RETRY_SCALE = 0.0001


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def make_hooks(store_url: str, mlflow_server: MlflowProcess, tmp_path: Path) -> Iterator[MakeHooks]:
    """Starts a gateway with its dispatcher on the test's store (SQLite, then PostgreSQL)."""
    gateways: list[RunningGateway] = []
    started: list[Hooks] = []

    def make(**overrides: object) -> Hooks:
        home = tmp_path / f"gateway{len(gateways)}"
        home.mkdir()
        options: dict[str, object] = {
            "webhook_allow_private": True,
            "webhook_retry_scale": RETRY_SCALE,
            "webhook_timeout": 2.0,
            "dispatcher": True,
            "reconcile_interval": 0,
        }
        options.update(overrides)
        settings = gateway_settings(store_url, mlflow_server.url, home, **options)
        running = start_gateway(settings)
        gateways.append(running)
        hooks = Hooks(
            running,
            settings,
            admin_key=running.create_key(Scope.ADMIN),
            write_key=running.create_key(Scope.WRITE),
        )
        started.append(hooks)
        return hooks

    try:
        yield make
    finally:
        for hooks in started:
            hooks.close()
        for running in gateways:
            running.stop()


@pytest.fixture
def hooks(make_hooks: MakeHooks) -> Hooks:
    return make_hooks()
