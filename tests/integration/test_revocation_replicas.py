"""Two gateway replicas (separate `hokusai serve` processes) on one PostgreSQL store: a key
revoked through one is refused by the other within a second."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers import POSTGRES_ENV, free_port, postgres_database
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyService
from hokusai.server.mlflow_process import MlflowProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    # Skipped before any fixture starts; set but unreachable PostgreSQL fails in the test.
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"{POSTGRES_ENV} is not set (replicas share PostgreSQL)",
    ),
]

GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
STARTUP_SECONDS = 90.0


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"replica {self.name} exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"replica {self.name} not ready in {STARTUP_SECONDS:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: nothing is left
        self.process.wait(timeout=10)


@pytest.fixture
def shared_store() -> Iterator[str]:
    """A fresh PostgreSQL database. Set but unreachable PostgreSQL is a failure, not a skip."""
    with postgres_database() as url:
        yield url


@contextlib.contextmanager
def replicas(
    names: list[str], store: str, secret: str, mlflow_url: str, tmp_path: Path
) -> Iterator[list[Replica]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env.update(HOKUSAI_DATABASE_URL=store, HOKUSAI_SECRET_KEY=secret)
    started: list[Replica] = []
    try:
        for name in names:
            port, log = free_port(), tmp_path / f"replica-{name}.log"
            command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--port", str(port)]
            command += ["--mlflow-url", mlflow_url, "--data-dir", str(tmp_path / name)]
            with log.open("wb") as output:
                process = subprocess.Popen(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=tmp_path,
                    start_new_session=True,
                )
            started.append(Replica(name, process, port, log))
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def get(replica: Replica, key: str) -> httpx.Response:
    return httpx.get(replica.url + GET_BY_NAME, headers={"Authorization": f"Bearer {key}"})


def test_revocation_reaches_the_other_replica_within_a_second(
    shared_store: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    secret = secrets.token_urlsafe(48)
    engine = make_engine(shared_store)
    try:
        upgrade(engine)
        keys = KeyService(engine, secret.encode())
        admin = keys.create(name="ops", owner="tests", scope=Scope.ADMIN).key
        issued = keys.create(name="ci", owner="tests", scope=Scope.WRITE)
    finally:
        engine.dispose()
    victim, victim_id = issued.key, issued.record.id

    with replicas(["a", "b"], shared_store, secret, mlflow_server.url, tmp_path) as (a, b):
        assert get(a, victim).status_code == 200
        assert get(b, victim).status_code == 200  # B now trusts the key from its cache

        revoke = httpx.post(
            f"{a.url}/api/v1/keys/{victim_id}/revoke",
            headers={"Authorization": f"Bearer {admin}"},
        )
        revoked_at = time.monotonic()
        assert revoke.status_code == 200, revoke.text
        assert revoke.json()["state"] == "revoked"

        accepted_meanwhile = 0
        while True:
            response = get(b, victim)
            elapsed = time.monotonic() - revoked_at
            if response.status_code != 200:
                break
            accepted_meanwhile += 1
            assert elapsed < 3.0, f"replica B still accepts the revoked key after {elapsed:.2f} s"
            time.sleep(0.02)
        assert response.status_code == 401, response.text
        assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert "revoked" in response.json()["message"]
        assert elapsed < 1.0, (
            f"replica B refused the revoked key only {elapsed:.2f} s after the revocation "
            f"({accepted_meanwhile} requests accepted meanwhile)"
        )

        # Refused from then on, on both replicas, and B's validation says why.
        for replica in (a, b, b):
            assert get(replica, victim).status_code == 401
        answer = httpx.post(
            b.url + "/api/v1/keys/validate",
            json={"key": victim},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
        assert (answer["valid"], answer["reason"], answer["id"]) == (False, "revoked", victim_id)
        # The admin key is untouched on both.
        assert get(a, admin).status_code == 200 and get(b, admin).status_code == 200
