"""The lead-scoring (LSCOR) walkthrough, end to end through the gateway: train, register a
baseline, register it for a token, register an improvement, read lineage and the latest
version, load a version back and predict."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.results import RegistrationResult
from tests.helpers import RunningGateway
from tests.sdk.support import LeadData, MlflowRest, make_leads, unique

pytestmark = pytest.mark.integration


@dataclass
class Walkthrough:
    name: str
    token: str
    tokenized_name: str
    auroc: float
    accuracy: float
    improved_auroc: float
    baseline: RegistrationResult
    tokenized: RegistrationResult
    not_ready: RegistrationResult
    unmeasured: RegistrationResult
    improved: RegistrationResult
    improved_tokenized: RegistrationResult
    improved_model: GradientBoostingClassifier


@pytest.fixture(scope="module")
def module_registry(sdk_gateway: RunningGateway) -> Iterator[ModelRegistry]:
    key = sdk_gateway.create_key(Scope.WRITE)
    with ModelRegistry(api_key=key, api_url=sdk_gateway.url, max_retry_time=10) as client:
        yield client


@pytest.fixture(scope="module")
def holdout() -> LeadData:
    return make_leads(300, seed=11)


@pytest.fixture(scope="module")
def walkthrough(
    module_registry: ModelRegistry,
    leads: LeadData,
    holdout: LeadData,
    lead_model: LogisticRegression,
    saved_lead_model: Path,
) -> Walkthrough:
    registry = module_registry
    name = unique("LSCOR")
    token = unique("lscor").lower()
    tokenized_name = name + "-token"

    scores = lead_model.predict_proba(holdout.features)[:, 1]
    auroc = float(roc_auc_score(holdout.labels, scores))
    accuracy = float(accuracy_score(holdout.labels, lead_model.predict(holdout.features)))

    baseline = registry.register_baseline(
        lead_model,
        model_type="lead_scoring",
        model_name=name,
        metadata={"dataset": "synthetic-leads-v1", "rows": 400},
        metrics={"auroc": auroc, "accuracy": accuracy},
    )
    tokenized = registry.register_tokenized_model(
        f"runs:/{baseline.run_id}/model",
        tokenized_name,
        token,
        "auroc",
        0.5,
        additional_tags={"team": "growth"},
    )
    not_ready = registry.register_tokenized_model(
        f"runs:/{baseline.run_id}/model", tokenized_name, token, "auroc", 0.9999
    )
    unmeasured = registry.register_tokenized_model(
        f"models:/{name}/{baseline.version}", tokenized_name, token, "f1", 0.5
    )

    improved_model = GradientBoostingClassifier(random_state=0).fit(leads.features, leads.labels)
    improved_auroc = float(
        roc_auc_score(holdout.labels, improved_model.predict_proba(holdout.features)[:, 1])
    )
    improved = registry.register_improved_model(
        improved_model,
        f"{name}/{baseline.version}",
        {"auroc": improved_auroc - auroc},
        "0xC0ffee254729296a45a3885639AC7E10F9d54979",
        metrics={"auroc": improved_auroc},
    )
    improved_tokenized = registry.register_improved_model(
        saved_lead_model,
        f"models:/{tokenized_name}/{tokenized.version}",
        {"auroc": 0.01},
        "contributor-2",
    )
    return Walkthrough(
        name=name,
        token=token,
        tokenized_name=tokenized_name,
        auroc=auroc,
        accuracy=accuracy,
        improved_auroc=improved_auroc,
        baseline=baseline,
        tokenized=tokenized,
        not_ready=not_ready,
        unmeasured=unmeasured,
        improved=improved,
        improved_tokenized=improved_tokenized,
        improved_model=improved_model,
    )


def test_core_import_path_is_the_same_class() -> None:
    from hokusai import ModelRegistry as FromPackage
    from hokusai.core import ModelRegistry as FromCore

    assert FromCore is FromPackage is ModelRegistry


def test_register_baseline(walkthrough: Walkthrough, mlflow_rest: MlflowRest) -> None:
    w = walkthrough
    result = w.baseline
    assert result.name == w.name
    assert result.version == "1"
    assert result.model_uri == f"models:/{w.name}/1"
    assert re.fullmatch(r"[0-9a-f]{32}", result.registration_id)
    assert result.run_id and re.fullmatch(r"[0-9a-f]{32}", result.run_id)

    run = mlflow_rest.run(result.run_id)
    assert run["info"]["status"] == "FINISHED"
    assert mlflow_rest.run_metrics(result.run_id) == pytest.approx(
        {"auroc": w.auroc, "accuracy": w.accuracy}
    )
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["model_type"] == "lead_scoring"
    run_tags = mlflow_rest.run_tags(result.run_id)
    assert run_tags["hokusai.registration_status"] == "complete"
    assert run_tags["hokusai.registration_id"] == result.registration_id

    version = mlflow_rest.version(w.name, "1")
    assert version["status"] == "READY"
    assert version["run_id"] == result.run_id
    assert version["source"] == result.source
    assert result.source.endswith(f"{result.run_id}/artifacts/model")
    tags = mlflow_rest.version_tags(w.name, "1")
    assert tags["hokusai_model_type"] == "lead_scoring"
    assert tags["dataset"] == "synthetic-leads-v1"
    assert tags["rows"] == "400"
    assert tags["hokusai.registration_id"] == result.registration_id
    model = mlflow_rest.call("GET", "registered-models/get", params={"name": w.name})
    aliases = {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]}
    assert aliases["baseline"] == "1"
    # The model files went up with the run.
    files = mlflow_rest.artifact_files(result.source.removeprefix("mlflow-artifacts:/"))
    assert any(f.endswith("/MLmodel") for f in files)
    assert any(f.endswith("/model.skops") for f in files)


def test_register_tokenized_model(walkthrough: Walkthrough, mlflow_rest: MlflowRest) -> None:
    w = walkthrough
    assert w.tokenized.name == w.tokenized_name
    assert w.tokenized.version == "1"
    # Registered from the baseline's run: same run, same files, no new run.
    assert w.tokenized.run_id == w.baseline.run_id
    assert w.tokenized.source == w.baseline.source

    tags = mlflow_rest.version_tags(w.tokenized_name, "1")
    assert tags["hokusai_token_id"] == w.token.upper() != w.token
    assert tags["benchmark_metric"] == "auroc"
    assert float(tags["benchmark_value"]) == 0.5
    # Measured on the source run: the baseline's real auroc, which beats 0.5.
    assert float(tags["measured_value"]) == pytest.approx(w.auroc)
    assert tags["ready_for_deploy"] == "true"
    assert tags["team"] == "growth"

    assert w.auroc < 0.9999
    not_ready = mlflow_rest.version_tags(w.tokenized_name, w.not_ready.version)
    assert float(not_ready["measured_value"]) == pytest.approx(w.auroc)
    assert not_ready["ready_for_deploy"] == "false"

    # The run never measured f1: nothing is claimed about it.
    unmeasured = mlflow_rest.version_tags(w.tokenized_name, w.unmeasured.version)
    assert unmeasured["benchmark_metric"] == "f1"
    assert "measured_value" not in unmeasured
    assert "ready_for_deploy" not in unmeasured
    assert w.unmeasured.source == w.baseline.source


def test_register_improved_model(walkthrough: Walkthrough, mlflow_rest: MlflowRest) -> None:
    w = walkthrough
    assert w.improved.name == w.name
    assert w.improved.version == "2"
    assert w.improved.run_id not in (None, w.baseline.run_id)
    tags = mlflow_rest.version_tags(w.name, "2")
    assert tags["hokusai_baseline"] == f"{w.name}/1"
    assert tags["hokusai_contributor"] == "0xC0ffee254729296a45a3885639AC7E10F9d54979"
    assert float(tags["hokusai_delta_auroc"]) == pytest.approx(w.improved_auroc - w.auroc)
    assert tags["hokusai_model_type"] == "lead_scoring"
    assert "hokusai_token_id" not in tags
    assert mlflow_rest.run_metrics(w.improved.run_id) == pytest.approx(
        {"auroc": w.improved_auroc, "delta_auroc": w.improved_auroc - w.auroc}
    )
    # An improvement is registered without moving the baseline alias.
    model = mlflow_rest.call("GET", "registered-models/get", params={"name": w.name})
    aliases = {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]}
    assert aliases.get("baseline") == "1"

    # An improvement of a tokenized model serves the same token and benchmark.
    token_tags = mlflow_rest.version_tags(w.tokenized_name, w.improved_tokenized.version)
    assert token_tags["hokusai_token_id"] == w.token.upper()
    assert token_tags["benchmark_metric"] == "auroc"
    assert token_tags["hokusai_baseline"] == f"{w.tokenized_name}/1"
    assert token_tags["hokusai_contributor"] == "contributor-2"


def test_model_lineage(walkthrough: Walkthrough, module_registry: ModelRegistry) -> None:
    w = walkthrough
    lineage = module_registry.get_model_lineage(w.name)
    assert [e["version"] for e in lineage] == ["1", "2"]
    first, second = lineage
    assert first["registration_kind"] == "baseline"
    assert first["baseline"] is None and first["contributor"] is None
    assert first["delta_metrics"] == {}
    assert first["run_id"] == w.baseline.run_id
    assert "baseline" in first["aliases"]
    assert second["registration_kind"] == "improved"
    assert second["baseline"] == f"{w.name}/1"
    assert second["contributor"] == "0xC0ffee254729296a45a3885639AC7E10F9d54979"
    assert second["delta_metrics"] == pytest.approx({"auroc": w.improved_auroc - w.auroc})
    assert second["model_uri"] == f"models:/{w.name}/2"
    assert first["created_at_ms"] <= second["created_at_ms"]

    token_lineage = module_registry.get_model_lineage(w.tokenized_name)
    assert [e["registration_kind"] for e in token_lineage] == [
        "tokenized",
        "tokenized",
        "tokenized",
        "improved",
    ]
    assert {e["token_id"] for e in token_lineage} == {w.token.upper()}


def test_tokenized_lookups(walkthrough: Walkthrough, module_registry: ModelRegistry) -> None:
    w = walkthrough
    versions = module_registry.list_models_by_token(w.token)
    assert [(v.name, v.version) for v in versions] == [
        (w.tokenized_name, w.tokenized.version),
        (w.tokenized_name, w.not_ready.version),
        (w.tokenized_name, w.unmeasured.version),
        (w.tokenized_name, w.improved_tokenized.version),
    ]
    assert all(v.token_id == w.token.upper() for v in versions)
    # Lower or upper case: the same token.
    assert [v.version for v in module_registry.list_models_by_token(w.token.upper())] == [
        v.version for v in versions
    ]
    newest = module_registry.get_tokenized_model(w.token)
    assert (newest.name, newest.version) == (w.tokenized_name, w.improved_tokenized.version)
    assert newest.tags["hokusai_baseline"] == f"{w.tokenized_name}/1"
    assert module_registry.list_models_by_token(unique("nobody")) == []


def test_get_latest_model_order(
    walkthrough: Walkthrough,
    module_registry: ModelRegistry,
    mlflow_rest: MlflowRest,
    sdk_gateway: RunningGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = walkthrough
    # No production or champion alias: the newest version.
    assert module_registry.get_latest_model(w.name).version == "2"

    mlflow_rest.set_alias(w.name, "champion", "1")
    latest = module_registry.get_latest_model(w.name)
    assert latest.version == "1"
    assert "champion" in latest.aliases

    # Production wins over champion; set with the stock MLflow client through the gateway
    # (a promote key: the default workspace protects production).
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", sdk_gateway.create_key(Scope.PROMOTE))
    MlflowClient(tracking_uri=sdk_gateway.tracking_uri).set_registered_model_alias(
        w.name, "production", "2"
    )
    latest = module_registry.get_latest_model(w.name)
    assert latest.version == "2"
    assert "production" in latest.aliases

    mlflow_rest.set_alias(w.name, "production", "1")
    mlflow_rest.set_alias(w.name, "champion", "2")
    assert module_registry.get_latest_model(w.name).version == "1"

    assert module_registry.get_model_version(f"{w.name}@champion").version == "2"
    assert module_registry.get_model_version(f"models:/{w.name}/1").run_id == w.baseline.run_id


def test_load_model_predicts_like_the_original(
    walkthrough: Walkthrough,
    module_registry: ModelRegistry,
    lead_model: LogisticRegression,
    holdout: LeadData,
) -> None:
    w = walkthrough
    loaded = module_registry.load_model(f"models:/{w.name}/1")
    np.testing.assert_array_equal(
        np.asarray(loaded.predict(holdout.features)),
        lead_model.predict(holdout.features),
    )
    improved = module_registry.load_model(module_registry.get_model_version(f"{w.name}/2"))
    expected = w.improved_model.predict(holdout.features)
    np.testing.assert_array_equal(np.asarray(improved.predict(holdout.features)), expected)
    # The two models differ somewhere, so each comparison is with the right model.
    assert (expected != lead_model.predict(holdout.features)).any()
    # Through the token: the same files as the baseline.
    tokenized = module_registry.load_model(f"{w.tokenized_name}/{w.tokenized.version}")
    np.testing.assert_array_equal(
        np.asarray(tokenized.predict(holdout.features)),
        lead_model.predict(holdout.features),
    )
