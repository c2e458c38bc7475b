"""The caller chooses how a scikit-learn model is stored (skops by default: safe to load,
but MLflow 2.x cannot; cloudpickle and pickle load everywhere). Each choice is recorded
in the model's MLmodel file and on the version, and loads back."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from hokusai import UnsafeModelError, ValidationError
from hokusai.cli.main import app
from hokusai.keys.scopes import Scope
from hokusai.sdk.model_files import SERIALIZATION_FORMATS, TAG_SERIALIZATION_FORMAT
from hokusai.sdk.registry import ModelRegistry
from tests.helpers import RunningGateway
from tests.sdk.support import ARTIFACTS_API, LeadData, MlflowRest, make_leads, unique

pytestmark = pytest.mark.integration


def stored_format(rest: MlflowRest, source: str) -> str:
    """What the MLmodel file in the artifact store says, read through the gateway."""
    path = source.removeprefix("mlflow-artifacts:/")
    response = rest.client.get(f"{ARTIFACTS_API}/{path}/MLmodel")
    assert response.status_code == 200, response.text
    return str(yaml.safe_load(response.text)["flavors"]["sklearn"]["serialization_format"])


@pytest.mark.parametrize("chosen", [None, *SERIALIZATION_FORMATS])
def test_each_format_is_recorded_and_loads_back(
    chosen: str | None,
    registry: ModelRegistry,
    lead_model: LogisticRegression,
    leads: LeadData,
    mlflow_rest: MlflowRest,
) -> None:
    name = unique("format")
    result = registry.register_baseline(
        lead_model, "lead_scoring", name, serialization_format=chosen, alias=None
    )
    expected = chosen or "skops"
    assert stored_format(mlflow_rest, result.source) == expected
    assert mlflow_rest.version_tags(name, result.version)[TAG_SERIALIZATION_FORMAT] == expected
    pickled = expected != "skops"
    if pickled:
        # Unpickling runs the file's code: refused unless the caller says it trusts it.
        with pytest.raises(UnsafeModelError, match=f"sklearn flavour is stored as {expected}"):
            registry.load_model(result.model_uri)
    loaded = registry.load_model(result.model_uri, allow_pickle=pickled)
    assert list(loaded.predict(leads.features)) == list(lead_model.predict(leads.features))


def test_a_saved_directory_keeps_and_records_its_own_format(
    registry: ModelRegistry, saved_lead_model: Path, mlflow_rest: MlflowRest
) -> None:
    name = unique("saved")
    result = registry.register_baseline(saved_lead_model, "lead_scoring", name, alias=None)
    tags = mlflow_rest.version_tags(name, result.version)
    assert tags[TAG_SERIALIZATION_FORMAT] == stored_format(mlflow_rest, result.source)


def test_formats_that_do_not_apply_are_refused_before_any_call(
    dead_url: str, lead_model: LogisticRegression, saved_lead_model: Path
) -> None:
    offline = ModelRegistry(api_key="k", api_url=dead_url, max_retry_time=0)
    with pytest.raises(ValidationError, match="must be one of skops, cloudpickle, pickle"):
        offline.register_baseline(lead_model, "lead_scoring", serialization_format="zip")
    with pytest.raises(ValidationError, match="MLflow model directory"):
        offline.register_baseline(saved_lead_model, "lead_scoring", serialization_format="pickle")
    with pytest.raises(ValidationError, match="already registered"):
        offline.register_baseline("models:/LSCOR/1", "lead_scoring", serialization_format="pickle")
    with pytest.raises(ValidationError, match="must be one of"):
        offline.register_measured_model(
            lead_model, "LSCOR", "LSCOR", "auroc", 0.5, None, serialization_format="joblib"
        )


def test_cli_serialization_format(
    sdk_gateway: RunningGateway,
    lead_model: LogisticRegression,
    mlflow_rest: MlflowRest,
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(lead_model))
    env = {
        "HOKUSAI_API_URL": sdk_gateway.url,
        "HOKUSAI_API_KEY": sdk_gateway.create_key(Scope.WRITE),
        "COLUMNS": "250",
    }
    token = unique("fmt")
    args = ["--token-id", token, "--model-path", str(model), "--metric", "auroc"]
    args += ["--baseline", "0.5", "--json"]
    result = CliRunner().invoke(
        app, ["models", "register", *args, "--serialization-format", "cloudpickle"], env=env
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["tags"][TAG_SERIALIZATION_FORMAT] == "cloudpickle"
    assert stored_format(mlflow_rest, answer["source"]) == "cloudpickle"
    reader = ModelRegistry(api_key=sdk_gateway.create_key(Scope.READ), api_url=sdk_gateway.url)
    leads = make_leads(30, seed=3)
    loaded = reader.load_model(answer["model_uri"], allow_pickle=True)
    assert list(loaded.predict(leads.features)) == list(lead_model.predict(leads.features))

    result = CliRunner().invoke(
        app, ["models", "register", *args, "--serialization-format", "zip"], env=env
    )
    assert result.exit_code == 2
    said = result.output.replace("\n", "")
    for choice in SERIALIZATION_FORMATS:
        assert choice in said
