"""What the registry produces: the stock MLflow client's registration yields exactly its
events, in order, with the model's data; token versions yield ``model.registered`` and
``token.ready_for_deploy``; endpoint filters restrict what an endpoint gets."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import numpy as np
import pytest
import sklearn
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from standardwebhooks import Webhook

from hokusai.integrity import TAG_MANIFEST_DIGEST
from tests.helpers import reread_tracking_uri
from tests.webhooks.receiver import Receiver, Request
from tests.webhooks.support import Hooks, unique, wait_until

pytestmark = pytest.mark.integration


def verified(requests: list[Request], secret: str) -> list[dict[str, Any]]:
    webhook = Webhook(secret)
    payloads = [webhook.verify(r.body, r.headers) for r in requests]
    for request, payload in zip(requests, payloads, strict=True):
        assert payload["id"] == request.webhook_id
    return payloads


def test_stock_mlflow_client_registration(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("lscor")
    _, secret = hooks.add_endpoint(receiver.url("/all"))
    _, created_secret = hooks.add_endpoint(
        receiver.url("/created"), events=["model_version.created"]
    )
    hooks.add_endpoint(receiver.url("/other-models"), model="churn-*")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", hooks.running.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", hooks.write_key)
    reread_tracking_uri()
    rng = np.random.default_rng(7)
    features = rng.normal(size=(100, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    started = datetime.now(UTC)
    try:
        experiment_id = mlflow.create_experiment(f"exp-{name}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            )
        version = mlflow.register_model(info.model_uri, name)
        client = MlflowClient()
        client.set_registered_model_alias(name, "canary", version.version)
        client.set_model_version_tag(name, version.version, "validated_by", "ci")
        client.delete_registered_model_alias(name, "canary")
        stored = client.get_model_version(name, version.version)
    finally:
        reread_tracking_uri()

    expected = [
        "registered_model.created",
        "model_version.created",
        "model_version.alias_set",
        "model_version.tag_set",
        "model_version.alias_deleted",
    ]
    received = receiver.wait_for("/all", len(expected), settle=0.5)
    payloads = verified(received, secret)
    assert [p["type"] for p in payloads] == expected, "exactly these events, in this order"
    assert len({p["id"] for p in payloads}) == len(expected)
    times = [datetime.fromisoformat(p["timestamp"]) for p in payloads]
    assert times == sorted(times)
    assert started - timedelta(seconds=1) < times[0] and times[-1] < datetime.now(UTC)
    for payload in payloads:
        assert payload["id"].startswith("evt_")
        assert payload["key_id"] == hooks.write_key_id
        assert payload["data"]["name"] == name
        assert payload["data"]["workspace"] == "default"
    created, alias_set, tag_set, alias_deleted = (p["data"] for p in payloads[1:])
    assert created["version"] == version.version == "1"
    assert created["run_id"] == run.info.run_id
    assert created["source"] == stored.source
    # The gateway gave the version a manifest before the client had its answer, so the
    # event of its creation carries the digest.
    digest = stored.tags[TAG_MANIFEST_DIGEST]
    assert digest.startswith("sha256:")
    assert created["tags"] == {TAG_MANIFEST_DIGEST: digest}
    assert stored.tags == {"validated_by": "ci", TAG_MANIFEST_DIGEST: digest}
    assert created["token_id"] is None
    here = {"workspace": "default"}
    # Alias events name who moved the alias.
    by = alias_set.pop("by")
    assert by["key_id"] == hooks.write_key_id and by["owner"]
    assert alias_deleted.pop("by") == by
    # The gateway's manifest for the stock client's version; nobody signed it.
    unsigned = {"manifest_digest": digest, "signer": None}
    assert alias_set == {"name": name, "alias": "canary", "version": "1", **unsigned, **here}
    assert tag_set == {"name": name, "version": "1", "key": "validated_by", "value": "ci", **here}
    assert alias_deleted == {"name": name, "alias": "canary", **here}

    [only_created] = verified(receiver.wait_for("/created", 1, settle=0.2), created_secret)
    assert only_created == payloads[1], "the same event, byte for byte"
    assert receiver.requests("/other-models") == []
    assert not any(r.path not in ("/all", "/created") for r in receiver.requests())


TOKEN = {
    "hokusai_token_id": "tok-lscor",
    "benchmark_metric": "auroc",
    "benchmark_value": "0.80",
}


def test_token_versions(hooks: Hooks, receiver: Receiver) -> None:
    _, secret = hooks.add_endpoint(
        receiver.url("/token"), events=["model.registered", "token.ready_for_deploy"]
    )
    name = unique("token")
    hooks.create_model(name)
    # 1: meets its benchmark when created. 2: below it, until a better measurement is set.
    # 3: no token id (until one is set). 4: lower is better, and it is lower.
    hooks.create_version(name, {**TOKEN, "measured_value": "0.85"})
    hooks.create_version(name, {**TOKEN, "measured_value": "0.70"})
    hooks.create_version(name, {"measured_value": "0.99"})
    hooks.create_version(
        name,
        {**TOKEN, "benchmark_value": "0.2", "measured_value": "0.1", "lower_is_better": "true"},
    )
    first = verified(receiver.wait_for("/token", 5, settle=0.5), secret)
    assert [(p["type"], p["data"]["version"]) for p in first] == [
        ("model.registered", "1"),
        ("token.ready_for_deploy", "1"),
        ("model.registered", "2"),
        ("model.registered", "4"),
        ("token.ready_for_deploy", "4"),
    ]
    ready = first[1]["data"]
    assert ready["token_id"] == "tok-lscor"
    assert ready["metric"] == {
        "name": "auroc",
        "benchmark_value": 0.8,
        "measured_value": 0.85,
        "lower_is_better": False,
    }
    assert ready["tags"]["measured_value"] == "0.85"
    assert first[4]["data"]["metric"]["lower_is_better"] is True

    def set_tag(version: str, key: str, value: str) -> None:
        hooks.mlflow(
            "POST",
            "model-versions/set-tag",
            json={"name": name, "version": version, "key": key, "value": value},
        )

    # Not yet: a tag that changes nothing about readiness, then a measurement still short.
    set_tag("2", "notes", "retrained")
    set_tag("2", "measured_value", "0.75")
    set_tag("2", "measured_value", "0.81")  # now it meets the benchmark
    set_tag("2", "measured_value", "0.90")  # still ready: no second event
    set_tag("3", "hokusai_token_id", "tok-other")  # now a token model (no benchmark)
    later = verified(receiver.wait_for("/token", 7, settle=0.5), secret)[5:]
    assert [(p["type"], p["data"]["version"]) for p in later] == [
        ("token.ready_for_deploy", "2"),
        ("model.registered", "3"),
    ]
    assert later[0]["data"]["metric"]["measured_value"] == 0.81
    assert later[1]["data"]["token_id"] == "tok-other"
    assert all(p["key_id"] == hooks.write_key_id for p in first + later)


def test_event_and_model_filters(hooks: Hooks, receiver: Receiver) -> None:
    prefix = unique("filter")
    endpoints = {
        "/everything": [],
        "/versions": ["--event", "model_version.created"],
        "/lscor": ["--model", f"{prefix}-lscor*"],
        "/either": ["--event", "registered_model.created", "--event", "model_version.alias_set"],
        "/one-char": ["--model", f"{prefix}-v?", "--event", "model_version.created"],
    }
    for path, options in endpoints.items():
        hooks.cli("webhooks", "add", receiver.url(path), *options)
    for model in (f"{prefix}-lscor-a", f"{prefix}-v2", f"{prefix}-v22"):
        hooks.create_model(model)
        hooks.create_version(model)
        hooks.mlflow(
            "POST",
            "registered-models/alias",
            json={"name": model, "alias": "prod", "version": "1"},
        )
    wait_until(lambda: len(receiver.requests("/everything")) >= 9, 20, "every event at /everything")

    def got(path: str) -> Counter[tuple[str, str]]:
        return Counter(
            (r.payload["type"], r.payload["data"]["name"]) for r in receiver.requests(path)
        )

    expected = {
        "/everything": {
            (kind, f"{prefix}-{model}")
            for kind in (
                "registered_model.created",
                "model_version.created",
                "model_version.alias_set",
            )
            for model in ("lscor-a", "v2", "v22")
        },
        "/versions": {("model_version.created", f"{prefix}-{m}") for m in ("lscor-a", "v2", "v22")},
        "/lscor": {
            (kind, f"{prefix}-lscor-a")
            for kind in (
                "registered_model.created",
                "model_version.created",
                "model_version.alias_set",
            )
        },
        "/either": {
            (kind, f"{prefix}-{model}")
            for kind in ("registered_model.created", "model_version.alias_set")
            for model in ("lscor-a", "v2", "v22")
        },
        "/one-char": {("model_version.created", f"{prefix}-v2")},
    }
    for path, wanted in expected.items():

        def arrived(path: str = path, wanted: set[tuple[str, str]] = wanted) -> bool:
            return set(got(path)) >= wanted

        wait_until(arrived, 10, path)
    time.sleep(0.3)  # room for a delivery that should not come
    for path, wanted in expected.items():
        assert got(path) == Counter(wanted), path


def test_a_models_events_arrive_in_the_order_they_happened(
    hooks: Hooks, receiver: Receiver
) -> None:
    _, secret = hooks.add_endpoint(receiver.url("/live"))
    started = datetime.now(UTC) - timedelta(seconds=1)
    name = unique("ordered")
    hooks.create_model(name)
    hooks.create_version(name)
    for step in range(20):
        hooks.mlflow(
            "POST",
            "model-versions/set-tag",
            json={"name": name, "version": "1", "key": "step", "value": str(step)},
        )
    live = verified(receiver.wait_for("/live", 22, settle=0.3), secret)
    assert [p["type"] for p in live[:2]] == ["registered_model.created", "model_version.created"]
    assert [p["data"]["value"] for p in live[2:]] == [str(step) for step in range(20)]

    # Replayed to a new endpoint, all due at once: still in order.
    replayed_to, replayed_secret = hooks.add_endpoint(receiver.url("/replayed"))
    response = hooks.client.post(
        "/api/v1/replay",
        json={"since": started.isoformat(), "endpoint_id": replayed_to["id"]},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"queued": 22}
    replayed = verified(receiver.wait_for("/replayed", 22, settle=0.3), replayed_secret)
    assert [p["id"] for p in replayed] == [p["id"] for p in live]
