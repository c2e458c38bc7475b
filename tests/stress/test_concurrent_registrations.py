"""Many clients registering versions of one model name at the same moment.

Half the registrations go through the SDK (``ModelRegistry.register_baseline``), half
through the stock MLflow client (``MlflowClient``: run, artifacts, version), all in
threads started together, all through the gateway. Afterwards: one distinct version per
registration, no errors, no run left without its version or unfinished, and every
version has its ``model_version.created`` event in the gateway's outbox. On SQLite, and
on PostgreSQL for both the gateway's store and MLflow's backend store.

HOKUSAI_STRESS_REGISTRATIONS sets how many (default 20: `make test`); `make reliability`
runs 100.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from hokusai.db.schema import events
from hokusai.gateway.write_queue import default_concurrency
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import (
    POSTGRES_ENV,
    MakeGateway,
    RunningGateway,
    mlflow_running,
    postgres_database,
)

pytestmark = pytest.mark.integration

REGISTRATIONS = int(os.environ.get("HOKUSAI_STRESS_REGISTRATIONS", "20"))


@dataclass
class Platform:
    gateway: RunningGateway
    mlflow: MlflowProcess


@pytest.fixture(params=["sqlite", "postgres"])
def stores(
    request: pytest.FixtureRequest, mlflow_server: MlflowProcess, tmp_path: Path
) -> Iterator[tuple[str, MlflowProcess]]:
    """The gateway's auth store and the MLflow behind it, both on SQLite or both on
    PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hokusai.db'}", mlflow_server
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with (
        postgres_database() as store_url,
        postgres_database() as mlflow_store_url,
        mlflow_running(tmp_path, mlflow_store_url) as mlflow_pg,
    ):
        yield store_url, mlflow_pg


@pytest.fixture
def platform(stores: tuple[str, MlflowProcess], make_gateway: MakeGateway) -> Platform:
    """The gateway in front of MLflow on ``stores`` (set up first, so the gateway is
    stopped before they go)."""
    store, mlflow_process = stores
    running = make_gateway(
        store,
        mlflow_process.url,
        # What `hokusai serve` sets for the MLflow it starts: one write at a time on SQLite.
        mlflow_write_concurrency=default_concurrency(mlflow_process.backend_store_uri),
    )
    return Platform(running, mlflow_process)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fitted model saved once, with its requirements given: MLflow would otherwise
    infer them by loading the model in a subprocess, seconds per save."""
    rows = np.random.default_rng(7).normal(size=(40, 3))
    model = LogisticRegression().fit(rows, (rows[:, 0] > 0).astype(int))
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(model, str(path), pip_requirements=["scikit-learn", "numpy"])
    return path


def register_with_sdk(platform: Platform, key: str, name: str, experiment: str, model: Path) -> str:
    with ModelRegistry(api_key=key, api_url=platform.gateway.url, max_retry_time=60) as registry:
        result = registry.register_baseline(
            str(model), model_type="stress", model_name=name, alias=None, experiment_name=experiment
        )
    return str(result.version)


def register_with_mlflow(client: MlflowClient, name: str, experiment_id: str, model: Path) -> str:
    run = client.create_run(experiment_id, run_name="stock-client")
    client.log_artifacts(run.info.run_id, str(model), "model")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name, run.info.artifact_uri + "/model", run_id=run.info.run_id
    )
    client.set_terminated(run.info.run_id)
    return str(version.version)


# Far above what it takes; only a hang would reach it.
@pytest.mark.timeout(300 + 15 * REGISTRATIONS)
def test_concurrent_registrations_of_one_name(
    platform: Platform, saved_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = platform.gateway
    name = f"stress-{uuid.uuid4().hex[:8]}"
    experiment = f"stress-{uuid.uuid4().hex[:8]}"
    sdk_key = gateway.create_key(Scope.WRITE, name="stress sdk")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", gateway.create_key(Scope.WRITE, name="stress"))
    client = MlflowClient(tracking_uri=gateway.tracking_uri)
    experiment_id = client.create_experiment(experiment)

    start = threading.Barrier(REGISTRATIONS)

    def one(index: int) -> str:
        start.wait(timeout=120)
        if index % 2 == 0:
            return register_with_sdk(platform, sdk_key, name, experiment, saved_model)
        return register_with_mlflow(client, name, experiment_id, saved_model)

    with ThreadPoolExecutor(max_workers=REGISTRATIONS) as pool:
        futures = [pool.submit(one, i) for i in range(REGISTRATIONS)]
        errors = [repr(f.exception()) for f in futures if f.exception() is not None]
    assert errors == [], f"{len(errors)} of {REGISTRATIONS} registrations failed: {errors[:5]}"
    versions = [f.result() for f in futures]

    # One distinct version per registration, and MLflow holds exactly those.
    assert len(set(versions)) == REGISTRATIONS
    stored = client.search_model_versions(f"name='{name}'", max_results=1000)
    assert sorted(int(v.version) for v in stored) == list(range(1, REGISTRATIONS + 1))
    assert all(v.status == "READY" for v in stored)

    # No orphan runs: every run of the experiment finished and is the run of one version.
    runs = client.search_runs([experiment_id], max_results=1000)
    assert len(runs) == REGISTRATIONS
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.info.run_id for r in runs) == sorted(str(v.run_id) for v in stored)

    # Every version has its event in the outbox, once; the name was created once.
    with gateway.gateway.engine.connect() as conn:
        rows = conn.execute(
            select(events.c.type, events.c.model_version).where(events.c.model_name == name)
        ).all()
    created = sorted(int(version) for kind, version in rows if kind == "model_version.created")
    assert created == list(range(1, REGISTRATIONS + 1))
    assert [kind for kind, _ in rows].count("registered_model.created") == 1
