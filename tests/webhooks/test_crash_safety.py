"""``hokusai serve`` killed with SIGKILL in the middle of a burst, and started again on the
same data directory. Registrations: every model version that exists in MLflow gets its
``model_version.created`` delivery; a delivery made twice keeps its webhook-id. Key
creations: every key that was answered works, and no half-made key is left in the store."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MLFLOW_API, auth, free_port
from tests.webhooks.receiver import Answer, Receiver, always
from tests.webhooks.support import run_source, unique, wait_until

pytestmark = pytest.mark.integration

MODELS, VERSIONS = 4, 10
KILL_AFTER = 12  # versions answered before the SIGKILL
STARTUP_SECONDS = 60.0


@dataclass
class Serve:
    """One ``hokusai serve`` process (in front of the test's MLflow), restartable."""

    data_dir: Path
    mlflow_url: str
    store_env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
        env.update(
            HOKUSAI_WEBHOOK_ALLOW_PRIVATE="1",
            HOKUSAI_WEBHOOK_RETRY_SCALE="0.001",
            HOKUSAI_RECONCILE_INTERVAL="2",
            # A claim outlives a round by at most a few timeouts: what the killed dispatcher
            # had claimed is taken again within about 20 s.
            HOKUSAI_WEBHOOK_TIMEOUT="2",
        )
        env.update(self.store_env)
        command = [sys.executable, "-m", "hokusai.cli.main", "serve", "--port", str(self.port)]
        command += ["--mlflow-url", self.mlflow_url, "--data-dir", str(self.data_dir)]
        self.starts += 1
        log = self.data_dir.parent / f"serve-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        with httpx.Client(timeout=2) as probe:
            while True:
                assert self.process.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    if probe.get(self.url + "/health").status_code == 200:
                        return
                assert time.monotonic() < deadline, f"serve not up: {log.read_text()[-3000:]}"
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def store_env(store_url: str) -> dict[str, str]:
    """The serve's store: its data directory (SQLite), or PostgreSQL."""
    if store_url.startswith("sqlite"):
        return {}
    return {"HOKUSAI_DATABASE_URL": store_url, "HOKUSAI_SECRET_KEY": secrets.token_hex(24)}


@contextlib.contextmanager
def serving(data_dir: Path, mlflow_url: str, store_env: dict[str, str]) -> Iterator[Serve]:
    serve = Serve(data_dir, mlflow_url, store_env)
    try:
        yield serve
    finally:
        serve.kill()


class Burst(threading.Thread):
    """Registers MODELS x VERSIONS versions through the gateway, retrying through the
    outage as a client would (a retried create may make one more version)."""

    def __init__(self, url: str, key: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix = prefix
        self.answered = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.client = httpx.Client(base_url=url, headers=auth(key), timeout=10)

    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(MLFLOW_API + endpoint, json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def call(self, endpoint: str, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + 90
        while not self.stop.is_set():
            try:
                response = self.client.post(MLFLOW_API + endpoint, json=body)
                if response.status_code == 200:
                    return
                if "RESOURCE_ALREADY_EXISTS" in response.text:  # created before the crash
                    return
                if response.status_code != 503:
                    self.errors.append(response.text)
                    return
            except httpx.HTTPError:
                pass  # the gateway is down: try again
            if time.monotonic() > deadline:
                self.errors.append(f"{endpoint} did not get through")
                return
            time.sleep(0.05)

    def run(self) -> None:
        with self.client:
            source = run_source(self._post)
            for m in range(MODELS):
                name = f"{self.prefix}-{m}"
                self.call("registered-models/create", {"name": name})
                for _ in range(VERSIONS):
                    self.call("model-versions/create", {"name": name, **source})
                    self.answered += 1


def test_sigkill_in_a_burst_loses_no_event(
    mlflow_server: MlflowProcess, receiver: Receiver, tmp_path: Path, store_env: dict[str, str]
) -> None:
    prefix = unique("crash")
    # A receiver that takes its time: when the SIGKILL comes, the dispatcher is in the middle
    # of sending, with deliveries claimed that it will never record.
    receiver.on("/crash", always(Answer(delay=0.2)))
    with (
        serving(tmp_path / "data", mlflow_server.url, store_env) as serve,
        httpx.Client(base_url=serve.url, timeout=10) as api,
    ):
        serve.start()
        api.headers.update(auth((serve.data_dir / "admin.key").read_text().strip()))
        created = api.post("/api/v1/keys", json={"name": "burst", "scope": "write"})
        assert created.status_code == 201, created.text
        added = api.post(
            "/api/v1/webhooks",
            json={
                "url": receiver.url("/crash"),
                "event_types": ["model_version.created"],
                "model_filter": f"{prefix}-*",
            },
        )
        assert added.status_code == 201, added.text
        endpoint_id, secret = added.json()["endpoint"]["id"], added.json()["secret"]

        burst = Burst(serve.url, created.json()["key"], prefix)
        burst.start()
        try:
            wait_until(lambda: burst.answered >= KILL_AFTER, 60, "the burst under way")
            serve.kill()
            serve.start()
            burst.join(timeout=120)
            assert not burst.is_alive(), "the burst did not finish"
        finally:
            burst.stop.set()
        assert burst.errors == []

        search = httpx.get(
            mlflow_server.url + "/api/2.0/mlflow/model-versions/search",
            params={"filter": f"name LIKE '{prefix}-%'", "max_results": 1000},
        )
        assert search.status_code == 200, search.text
        in_mlflow = {(v["name"], v["version"]) for v in search.json()["model_versions"]}
        assert len(in_mlflow) >= MODELS * VERSIONS

        def delivered() -> set[tuple[str, str]]:
            return {
                (r.payload["data"]["name"], r.payload["data"]["version"])
                for r in receiver.requests("/crash")
            }

        # The reconciler leaves versions younger than 10 s to the gateway, then passes every
        # 2 s; a delivery the killed dispatcher had claimed waits for its lease to end (20 s).
        wait_until(lambda: delivered() >= in_mlflow, 45, "a delivery for every version")

        def all_recorded() -> bool:
            found = api.get(
                "/api/v1/deliveries", params={"endpoint_id": endpoint_id, "limit": 1000}
            ).json()["deliveries"]
            return len(found) == len(in_mlflow) and all(d["status"] == "delivered" for d in found)

        wait_until(all_recorded, 45, "every delivery recorded as delivered, none left claimed")

    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    webhook = Webhook(secret)
    for request in receiver.requests("/crash"):
        payload = webhook.verify(request.body, request.headers)
        assert payload["type"] == "model_version.created"
        ids[(payload["data"]["name"], payload["data"]["version"])].add(request.webhook_id)
    assert set(ids) == in_mlflow, "nothing delivered for a version MLflow does not have"
    assert {k: v for k, v in ids.items() if len(v) > 1} == {}, "one webhook-id per version"


class KeyBurst(threading.Thread):
    """Creates keys through the admin API one after another until stopped, keeping every
    key whose creation was answered."""

    def __init__(self, url: str, admin_key: str) -> None:
        super().__init__(daemon=True)
        self.issued: list[str] = []
        self.stop = threading.Event()
        self.client = httpx.Client(base_url=url, headers=auth(admin_key), timeout=10)

    def run(self) -> None:
        with self.client:
            while not self.stop.is_set():
                try:
                    response = self.client.post(
                        "/api/v1/keys", json={"name": f"burst {len(self.issued)}"}
                    )
                except httpx.HTTPError:
                    time.sleep(0.05)  # the gateway is down
                    continue
                if response.status_code == 201:
                    self.issued.append(response.json()["key"])


def test_sigkill_in_a_key_burst_leaves_only_whole_keys(
    mlflow_server: MlflowProcess, tmp_path: Path, store_env: dict[str, str]
) -> None:
    with serving(tmp_path / "data", mlflow_server.url, store_env) as serve:
        serve.start()
        admin_key = (serve.data_dir / "admin.key").read_text().strip()
        burst = KeyBurst(serve.url, admin_key)
        burst.start()
        try:
            wait_until(lambda: len(burst.issued) >= 10, 60, "keys being created")
            serve.kill()
            answered_before_kill = len(burst.issued)
            serve.start()
            wait_until(lambda: len(burst.issued) > answered_before_kill, 60, "keys again")
        finally:
            burst.stop.set()
            burst.join(timeout=30)

        with httpx.Client(base_url=serve.url, timeout=10) as api:
            # Every key whose creation was answered works, before the crash or after it.
            for key in burst.issued:
                whoami = api.get("/api/v1/whoami", headers=auth(key))
                assert whoami.status_code == 200, whoami.text
            listed = api.get(
                "/api/v1/keys", headers=auth(admin_key), params={"include_revoked": "true"}
            )
            assert listed.status_code == 200, listed.text
            rows = listed.json()["keys"]
        # No row is half made: each has every field a key needs, and the store holds no key
        # that was never answered beyond the one in flight at the moment of the kill.
        burst_rows = [row for row in rows if row["name"].startswith("burst ")]
        for row in burst_rows:
            assert row["id"] and row["display_prefix"] and row["scope"] and row["created_at"]
        assert len(burst.issued) <= len(burst_rows) <= len(burst.issued) + 1
