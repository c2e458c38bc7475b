from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hokusai import timestamps
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.settings import Settings
from tests.helpers import (
    POSTGRES_ENV,
    MakeGateway,
    MovedClock,
    RunningGateway,
    ServeGateway,
    gateway_settings,
    mlflow_running,
    postgres_database,
    start_gateway,
)

STORES = ["sqlite", "postgres"]


def _stand_in_for_pyopenssl() -> None:
    """model-signing 1.1 imports pyOpenSSL (for its certificate signer) without declaring
    it; the ``signing`` extra installs it. Where a test environment lacks it, an empty
    stand-in lets model-signing import: the tests sign only with keys, which never reach
    pyOpenSSL (a certificate signer would fail loudly on the empty module)."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("OpenSSL") is not None or "OpenSSL" in sys.modules:
        return
    package, crypto = types.ModuleType("OpenSSL"), types.ModuleType("OpenSSL.crypto")
    package.crypto = crypto  # type: ignore[attr-defined]
    sys.modules["OpenSSL"], sys.modules["OpenSSL.crypto"] = package, crypto


_stand_in_for_pyopenssl()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings come from the environment: a developer's own HOKUSAI_* or MLFLOW_*
    # variables must not leak into a test.
    for name in list(os.environ):
        if name.startswith(("HOKUSAI_", "MLFLOW_")) and name != POSTGRES_ENV:
            monkeypatch.delenv(name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    """The wall clock of everything in this process (gateways started by ``start_gateway``
    and commands run with ``CliRunner`` included), moved forward by the test."""
    moved = MovedClock()
    monkeypatch.setattr(timestamps, "clock", moved)
    return moved


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty auth store: SQLite, and PostgreSQL when HOKUSAI_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hokusai.db'}"
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with postgres_database() as url:
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The auth store of ``store_url``, migrated."""
    engine = make_engine(store_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowProcess]:
    """A real MLflow tracking server (the pinned version) on a loopback port."""
    with mlflow_running(tmp_path_factory.mktemp("mlflow")) as process:
        yield process


@pytest.fixture
def serve_gateway() -> Iterator[ServeGateway]:
    """Gateways started with whole ``settings`` of the test's (on ``port`` when given);
    every one is stopped after the test."""
    started: list[RunningGateway] = []

    def serve(settings: Settings, *, port: int | None = None) -> RunningGateway:
        running = start_gateway(settings, port=port)
        started.append(running)
        return running

    yield serve
    for running in started:
        running.stop()


@pytest.fixture
def make_gateway(serve_gateway: ServeGateway, tmp_path: Path) -> MakeGateway:
    """Gateways on ``store`` in front of ``mlflow_url``, with settings of the test's own
    (``overrides``); every one is stopped after the test."""

    def make(store: str, mlflow_url: str, **overrides: object) -> RunningGateway:
        return serve_gateway(gateway_settings(store, mlflow_url, tmp_path, **overrides))

    return make


@pytest.fixture
def gateway(
    store_url: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> Iterator[RunningGateway]:
    """The gateway in front of the real MLflow, on each store."""
    running = start_gateway(gateway_settings(store_url, mlflow_server.url, tmp_path))
    yield running
    running.stop()
