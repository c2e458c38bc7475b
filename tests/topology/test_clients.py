"""The stock MLflow client and the SDK, given only the HTTPS URL, a key and the CA bundle,
register LSCOR, set an alias and load it back; the files land in the S3 bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from stack.topology import BUCKET, Topology

from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from tests.topology.support import pytestmark as marks

pytestmark = marks

# Run by a plain interpreter configured by nothing but MLflow's own environment variables.
STOCK_CLIENT = """
import json, sys
import mlflow, numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

name = sys.argv[1]
rng = np.random.default_rng(7)
features = rng.normal(size=(200, 4))
labels = (features[:, 0] + features[:, 1] > 0).astype(int)
model = LogisticRegression().fit(features, labels)
experiment_id = mlflow.create_experiment("exp-" + name)
with mlflow.start_run(experiment_id=experiment_id) as run:
    mlflow.log_metric("auroc", 0.91)
    info = mlflow.sklearn.log_model(model, name="model")
version = mlflow.register_model(info.model_uri, name)
client = MlflowClient()
client.set_registered_model_alias(name, "champion", version.version)
loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
same = bool((loaded.predict(features[:20]) == model.predict(features[:20])).all())
print(json.dumps({
    "version": version.version,
    "alias_version": client.get_model_version_by_alias(name, "champion").version,
    "same_predictions": same,
    "artifact_location": mlflow.get_logged_model(info.model_id).artifact_location,
}))
"""


def s3_keys(topology: Topology, prefix: str) -> list[str]:
    s3: Any = topology.s3_client()
    answer = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [entry["Key"] for entry in answer.get("Contents", [])]


def s3_prefix(artifact_uri: str) -> str:
    """``mlflow-artifacts:/<path>`` is served from s3://BUCKET/artifacts/<path>."""
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    return "artifacts/" + artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")


def local_model_files(topology: Topology) -> list[Path]:
    return list(topology.workdir.rglob("MLmodel"))


def test_stock_mlflow_client_over_tls(topology: Topology, tmp_path: Path) -> None:
    key = topology.create_key(Scope.PROMOTE, "stock client")  # it sets champion, a protected alias
    name = f"LSCOR-stock-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=topology.tracking_uri,
        MLFLOW_TRACKING_TOKEN=key,
        MLFLOW_TRACKING_SERVER_CERT_PATH=str(topology.ca_bundle),
    )
    done = subprocess.run(
        [sys.executable, "-c", STOCK_CLIENT, name],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == result["alias_version"] == "1"
    assert result["same_predictions"] is True

    stored = s3_keys(topology, s3_prefix(result["artifact_location"]))
    assert any(k.endswith("/MLmodel") for k in stored), stored
    assert any(k.endswith("/model.pkl") or k.endswith("/model.skops") for k in stored), stored
    assert local_model_files(topology) == []


def test_sdk_over_tls(topology: Topology) -> None:
    key = topology.create_key(Scope.PROMOTE, "sdk")  # it registers with champion, a protected alias
    name = f"LSCOR-sdk-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] - features[:, 2] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)

    with ModelRegistry(
        api_url=topology.url, api_key=key, ca_bundle=str(topology.ca_bundle), max_retry_time=10
    ) as registry:
        result = registry.register_baseline(
            model,
            model_type="lead_scoring",
            model_name=name,
            metrics={"auroc": 0.9},
            alias="champion",
        )
        assert result.version == "1"
        assert registry.get_model_version(f"{name}@champion").version == "1"
        loaded = registry.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(loaded.predict(features[:20]), model.predict(features[:20]))

    stored = s3_keys(topology, s3_prefix(result.source))
    assert any(k.endswith("/MLmodel") for k in stored), stored
    assert local_model_files(topology) == []
