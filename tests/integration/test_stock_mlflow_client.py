"""The stock MLflow client, configured by nothing but MLFLOW_TRACKING_URI and
MLFLOW_TRACKING_TOKEN, does a whole registration through the gateway."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from hokusai.keys.scopes import Scope
from tests.helpers import RunningGateway, reread_tracking_uri

pytestmark = pytest.mark.integration


def test_register_and_load_through_gateway(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A promote key: the default workspace protects the "champion" alias set below.
    key = gateway.create_key(Scope.PROMOTE)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", key)
    reread_tracking_uri()
    name = f"lscor-{uuid.uuid4().hex[:8]}"

    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)

    experiment_id = mlflow.create_experiment(f"exp-{name}")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("auroc", 0.91)
        info = mlflow.sklearn.log_model(model, name="model")
    version = mlflow.register_model(info.model_uri, name)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", version.version)

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(loaded.predict(features[:20]), model.predict(features[:20]))
    assert client.get_run(run.info.run_id).data.metrics["auroc"] == 0.91
    assert client.get_model_version_by_alias(name, "champion").version == version.version

    # Every write went through the audit log under this key, none of the reads did.
    entries = gateway.gateway.audit.read(limit=1000)
    paths = {e["path"] for e in entries if e["key_id"] == gateway.gateway.keys.resolve(key).id}
    assert "/api/2.0/mlflow/model-versions/create" in paths
    assert "/api/2.0/mlflow/registered-models/alias" in paths
    assert "/api/2.0/mlflow/experiments/get-by-name" not in paths
