"""What the webhook tests share: a gateway that delivers webhooks, and bounded waits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy import Table, select
from typer.testing import CliRunner, Result

from hokusai.cli.main import app
from hokusai.settings import Settings
from tests.helpers import MLFLOW_API, RunningGateway, auth

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {value!r})")
        time.sleep(interval)


def run_source(post: Callable[[str, dict[str, Any]], dict[str, Any]]) -> dict[str, str]:
    """A new run's ``source`` and ``run_id``, made with ``post(endpoint, body)``: a version's
    source must be a run of the caller's own workspace."""
    experiment = post("experiments/create", {"name": unique("exp")})
    run = post("runs/create", {"experiment_id": experiment["experiment_id"]})
    run_id = str(run["run"]["info"]["run_id"])
    return {"source": f"runs:/{run_id}/model", "run_id": run_id}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Hooks:
    """A gateway (with its dispatcher) on one store, an admin and a write key, and the
    CLI on the same store."""

    running: RunningGateway
    settings: Settings
    admin_key: str
    write_key: str
    client: httpx.Client = field(init=False)  # with the admin key
    writer: httpx.Client = field(init=False)  # with the write key
    runner: CliRunner = field(default_factory=CliRunner)
    # The run every version is made from (see run_source), made on first use.
    _run: dict[str, str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        url = self.running.url
        self.client = httpx.Client(base_url=url, headers=auth(self.admin_key), timeout=30)
        self.writer = httpx.Client(base_url=url, headers=auth(self.write_key), timeout=30)

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def engine(self) -> Any:
        return self.running.gateway.engine

    @property
    def write_key_id(self) -> str:
        return self.running.gateway.keys.resolve(self.write_key).id

    def close(self) -> None:
        self.client.close()
        self.writer.close()

    # ---- the Hokusai API ----------------------------------------------------------------

    def add_endpoint(
        self, url: str, *, events: list[str] | None = None, model: str | None = None
    ) -> tuple[dict[str, Any], str]:
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["event_types"] = events
        if model is not None:
            body["model_filter"] = model
        response = self.client.post("/api/v1/webhooks", json=body)
        assert response.status_code == 201, response.text
        answer = response.json()
        return answer["endpoint"], answer["secret"]

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/webhooks/{endpoint_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/deliveries", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return list(response.json()["deliveries"])

    def wait_deliveries(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        what: str,
        timeout: float = 30.0,
        **params: Any,
    ) -> list[dict[str, Any]]:
        def probe() -> list[dict[str, Any]] | None:
            found = self.deliveries(**params)
            return found if done(found) else None

        return wait_until(probe, timeout, what, interval=0.1)

    def events(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/events", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return list(response.json()["events"])

    # ---- MLflow through the gateway -----------------------------------------------------

    def mlflow(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        response = self.writer.request(method, MLFLOW_API + endpoint, **kwargs)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def create_model(self, name: str) -> dict[str, Any]:
        return dict(self.mlflow("POST", "registered-models/create", json={"name": name}))

    def create_version(self, name: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
        if self._run is None:
            self._run = run_source(lambda e, b: self.mlflow("POST", e, json=b))
        body: dict[str, Any] = {"name": name, **self._run}
        if tags:
            body["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        return dict(self.mlflow("POST", "model-versions/create", json=body)["model_version"])

    # ---- the store and the CLI ------------------------------------------------------------

    def rows(self, table: Table) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table))]

    def cli_env(self) -> dict[str, str]:
        return {
            "HOKUSAI_HOME": str(self.settings.home),
            "HOKUSAI_DATABASE_URL": str(self.settings.database_url),
            "HOKUSAI_SECRET_KEY": str(self.settings.secret_key),
            "HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1" if self.settings.webhook_allow_private else "0",
            "HOKUSAI_WEBHOOK_TIMEOUT": str(self.settings.webhook_timeout),
            "COLUMNS": "250",
        }

    def cli(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(app, list(args), env=self.cli_env())
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result


MakeHooks = Callable[..., Hooks]
