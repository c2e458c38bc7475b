"""Shared test machinery: real servers on loopback ports, real databases."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hokusai.db.engine import make_engine, normalise_url
from hokusai.db.migrate import upgrade
from hokusai.gateway.app import Gateway
from hokusai.keys.scopes import Scope
from hokusai.server.http_server import server_config
from hokusai.settings import Settings

POSTGRES_ENV = "HOKUSAI_TEST_POSTGRES_URL"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards.

    HOKUSAI_TEST_POSTGRES_URL names the server. When it is set and the server cannot be
    reached, that is an error, never a skip.
    """
    base = os.environ[POSTGRES_ENV]
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    name = "hk_test_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(normalise_url(base)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def tracking_uri(self) -> str:
        return self.url + "/api/mlflow"

    def create_key(self, scope: Scope = Scope.WRITE, **kwargs: object) -> str:
        kwargs.setdefault("name", f"test {scope.value}")
        kwargs.setdefault("owner", "tests")
        return self.gateway.keys.create(scope=scope, **kwargs).key  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_gateway(settings: Settings) -> RunningGateway:
    """The real gateway on a real loopback socket, served by uvicorn in a thread."""
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    gateway = Gateway(settings, engine=engine)
    port = free_port()
    config = server_config(gateway, settings, host="127.0.0.1", port=port, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    return RunningGateway(f"http://127.0.0.1:{port}", gateway, server, thread)
