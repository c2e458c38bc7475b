"""``hokusai model register`` measures the metric itself, and ``hokusai models
list|lineage|show`` print what was registered."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner, Result

from hokusai.cli.main import app
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from tests.helpers import RunningGateway
from tests.sdk.support import LeadData, MlflowRest, make_leads, unique

pytestmark = pytest.mark.integration


@dataclass
class Files:
    model: Path
    data: Path
    auroc: float  # what scikit-learn says the model scores on the data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, lead_model: LogisticRegression) -> Files:
    directory = tmp_path_factory.mktemp("cli")
    evaluation: LeadData = make_leads(250, seed=23)
    frame = evaluation.features.assign(y=evaluation.labels)
    data = directory / "data.csv"
    frame.to_csv(data, index=False)
    model = directory / "model.pkl"
    model.write_bytes(pickle.dumps(lead_model))
    # Computed here from the CSV as written, independently of the CLI.
    import pandas as pd

    read = pd.read_csv(data)
    auroc = float(roc_auc_score(read["y"], lead_model.predict_proba(read.drop(columns="y"))[:, 1]))
    return Files(model=model, data=data, auroc=auroc)


@pytest.fixture(scope="module")
def cli_env(sdk_gateway: RunningGateway) -> dict[str, str]:
    return {
        "HOKUSAI_API_URL": sdk_gateway.url,
        "HOKUSAI_API_KEY": sdk_gateway.create_key(Scope.WRITE),
        "COLUMNS": "250",
    }


@pytest.fixture(scope="module")
def reader(sdk_gateway: RunningGateway) -> Iterator[ModelRegistry]:
    key = sdk_gateway.create_key(Scope.READ)
    with ModelRegistry(api_key=key, api_url=sdk_gateway.url) as registry:
        yield registry


def hokusai(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def register(env: dict[str, str], files: Files, token: str, *extra: str) -> Result:
    return hokusai(
        env,
        "model",
        "register",
        "--token-id",
        token,
        "--model-path",
        str(files.model),
        "--metric",
        "auroc",
        *extra,
        "--json",
    )


@dataclass
class Registered:
    token: str
    ready: dict[str, Any]
    not_ready: dict[str, Any]
    unmeasured: dict[str, Any]
    unmeasured_stderr: str


@pytest.fixture(scope="module")
def registered(cli_env: dict[str, str], files: Files) -> Registered:
    """Three registrations of one token: baseline met, baseline above the model, unmeasured."""
    token = unique("lscor").lower()
    assert files.auroc + 0.05 < 1.0
    answers = []
    stderr = ""
    for extra in (
        ["--baseline", "0.5", "--eval-data", str(files.data), "--label-column", "y"],
        [
            "--baseline",
            repr(files.auroc + 0.05),
            "--eval-data",
            str(files.data),
            "--label-column",
            "y",
        ],
        ["--baseline", "0.5"],
    ):
        result = register(cli_env, files, token, *extra)
        assert result.exit_code == 0, result.output
        answers.append(json.loads(result.stdout))
        stderr = result.stderr
    ready, not_ready, unmeasured = answers
    return Registered(token, ready, not_ready, unmeasured, unmeasured_stderr=stderr)


def test_register_measures_the_metric(
    registered: Registered, files: Files, mlflow_rest: MlflowRest
) -> None:
    answer = registered.ready
    name = registered.token.upper()  # the model is named after the token
    assert answer["name"] == name
    assert answer["version"] == "1"
    assert answer["model_uri"] == f"models:/{name}/1"
    assert answer["measured_value"] == pytest.approx(files.auroc, abs=1e-12)
    assert answer["ready_for_deploy"] is True
    assert mlflow_rest.run_metrics(answer["run_id"]) == {"auroc": pytest.approx(files.auroc)}
    tags = mlflow_rest.version_tags(name, "1")
    assert tags["hokusai_token_id"] == registered.token.upper()
    assert tags["benchmark_metric"] == "auroc"
    assert float(tags["benchmark_value"]) == 0.5
    assert float(tags["measured_value"]) == pytest.approx(files.auroc)
    assert tags["ready_for_deploy"] == "true"
    assert tags["lower_is_better"] == "false"
    assert mlflow_rest.run_tags(answer["run_id"])["hokusai.registration_status"] == "complete"


def test_a_baseline_above_the_model_is_not_ready(
    registered: Registered, files: Files, mlflow_rest: MlflowRest
) -> None:
    answer = registered.not_ready
    assert answer["version"] == "2"
    assert answer["measured_value"] == pytest.approx(files.auroc, abs=1e-12)
    assert answer["ready_for_deploy"] is False
    tags = mlflow_rest.version_tags(answer["name"], "2")
    assert float(tags["benchmark_value"]) == pytest.approx(files.auroc + 0.05)
    assert tags["ready_for_deploy"] == "false"
    assert mlflow_rest.run_metrics(answer["run_id"]) == {"auroc": pytest.approx(files.auroc)}


def test_without_eval_data_nothing_is_measured(
    registered: Registered, mlflow_rest: MlflowRest
) -> None:
    answer = registered.unmeasured
    assert answer["version"] == "3"
    assert answer["measured_value"] is None
    assert answer["ready_for_deploy"] is False
    assert "not measured" in registered.unmeasured_stderr
    assert mlflow_rest.run_metrics(answer["run_id"]) == {}
    tags = mlflow_rest.version_tags(answer["name"], "3")
    assert "measured_value" not in tags
    assert tags.get("ready_for_deploy") != "true"


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        ({"--model-path": "missing.pkl"}, ["--model-path", "missing.pkl", "does not exist"]),
        ({"--label-column": None}, ["--eval-data and --label-column go together"]),
        ({"--label-column": "converted"}, ["has no column 'converted'", "company_size"]),
        ({"--token-id": "bad id!"}, ["token_id must be 1-64 letters, digits or dashes"]),
        ({"--metric": "speed"}, ["cannot measure 'speed'", "auroc"]),
    ],
    ids=["missing-model", "eval-data-without-label", "unknown-label", "bad-token", "metric"],
)
def test_bad_inputs_exit_2_and_register_nothing(
    change: dict[str, str | None],
    phrases: list[str],
    cli_env: dict[str, str],
    files: Files,
    mlflow_rest: MlflowRest,
    tmp_path: Path,
) -> None:
    name = unique("refused")
    options: dict[str, str | None] = {
        "--token-id": unique("refused"),
        "--model-path": str(files.model),
        "--metric": "auroc",
        "--baseline": "0.5",
        "--eval-data": str(files.data),
        "--label-column": "y",
        "--model-name": name,
    }
    for option, value in change.items():
        options[option] = str(tmp_path / value) if option == "--model-path" and value else value
    args = [part for option, value in options.items() if value for part in (option, value)]
    result = hokusai(cli_env, "model", "register", *args)
    assert result.exit_code == 2, result.output
    said = result.stderr.replace("\n", "")
    assert said.startswith("error:"), said
    for phrase in phrases:
        assert phrase in said
    assert result.stdout == ""
    response = mlflow_rest.client.get(
        "/api/mlflow/api/2.0/mlflow/registered-models/get", params={"name": name}
    )
    assert response.status_code == 404
    token = options["--token-id"]
    if token and token != "bad id!":
        found = mlflow_rest.call(
            "GET",
            "model-versions/search",
            params={"filter": f"tags.hokusai_token_id = '{token.upper()}'"},
        )
        assert found.get("model_versions", []) == []


def test_models_list_by_token(registered: Registered, cli_env: dict[str, str]) -> None:
    name = registered.token.upper()
    result = hokusai(cli_env, "models", "list", "--token-id", registered.token, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(v["name"], v["version"]) for v in listed] == [(name, "1"), (name, "2"), (name, "3")]
    assert [v["tags"].get("ready_for_deploy") for v in listed] == ["true", "false", None]
    assert {v["tags"]["hokusai_token_id"] for v in listed} == {name}

    result = hokusai(cli_env, "models", "list", "--token-id", registered.token)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if name in line]
    assert len(rows) == 3
    assert all("auroc" in row for row in rows)
    assert "true" in rows[0] and "false" in rows[1]

    result = hokusai(cli_env, "models", "list", "--model-name", name, "--json")
    assert [v["version"] for v in json.loads(result.stdout)] == ["1", "2", "3"]


def test_models_lineage(registered: Registered, cli_env: dict[str, str]) -> None:
    name = registered.token.upper()
    result = hokusai(cli_env, "models", "lineage", name, "--json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert [e["version"] for e in entries] == ["1", "2", "3"]
    assert {e["registration_kind"] for e in entries} == {"tokenized"}
    assert {e["token_id"] for e in entries} == {name}
    assert entries[0]["run_id"] == registered.ready["run_id"]

    result = hokusai(cli_env, "models", "lineage", name)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("tokenized") == 3

    result = hokusai(cli_env, "models", "lineage", unique("nothing"))
    assert result.exit_code == 4
    assert "no versions of model" in result.stderr


def test_models_show(
    registered: Registered, cli_env: dict[str, str], mlflow_rest: MlflowRest
) -> None:
    name = registered.token.upper()
    mlflow_rest.set_alias(name, "production", "2")
    result = hokusai(cli_env, "models", "show", f"{name}@production", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["name"], shown["version"]) == (name, "2")
    assert shown["run_id"] == registered.not_ready["run_id"]
    assert shown["tags"]["ready_for_deploy"] == "false"
    assert "production" in shown["aliases"]

    result = hokusai(cli_env, "models", "show", f"{name}@production")
    assert result.exit_code == 0, result.output
    assert f"models:/{name}/2" in result.stdout
    assert f"hokusai_token_id = {name}" in result.stdout
    assert "production" in result.stdout

    # NAME alone: the production version, not the newest.
    result = hokusai(cli_env, "models", "show", name, "--json")
    assert json.loads(result.stdout)["version"] == "2"
    result = hokusai(cli_env, "models", "show", f"{name}/3", "--json")
    assert json.loads(result.stdout)["version"] == "3"
    result = hokusai(cli_env, "models", "show", f"{name}@nowhere")
    assert result.exit_code != 0
    assert "nowhere" in result.stderr.replace("\n", "")


def test_registered_model_loads_and_predicts_like_the_pickle(
    registered: Registered, reader: ModelRegistry, lead_model: LogisticRegression
) -> None:
    leads = make_leads(50, seed=5)
    loaded = reader.load_model(registered.ready["model_uri"])
    assert list(loaded.predict(leads.features)) == list(lead_model.predict(leads.features))


def test_register_with_a_read_key_fails_before_measuring(
    cli_env: dict[str, str], files: Files, sdk_gateway: RunningGateway
) -> None:
    env = {**cli_env, "HOKUSAI_API_KEY": sdk_gateway.create_key(Scope.READ)}
    for group in ("model", "models"):  # the older name and the command group
        result = hokusai(
            env,
            group,
            "register",
            "--token-id",
            unique("ro"),
            "--model-path",
            str(files.model),
            "--metric",
            "auroc",
            "--baseline",
            "0.5",
            "--eval-data",
            str(files.data),
            "--label-column",
            "y",
        )
        assert result.exit_code == 3, result.output
        said = result.stderr.replace("\n", "")
        assert "needs the 'write' role" in said
        assert "has 'read'" in said
        # Checked before the model was loaded or measured, and said once.
        assert "measured" not in said
        assert said.count("error:") == 1
        assert result.stdout == ""
