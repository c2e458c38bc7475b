"""Aliases and promotion, in the SDK and the CLI, through the real gateway and MLflow: each
change is audited and becomes an outbox event, ``models list`` shows aliases, and the
README's ``hokusai models show LSCOR@production`` works after ``hokusai models promote``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hokusai import NotFoundError, PermissionDeniedError, ValidationError
from hokusai.admin.actor import Actor, Origin
from hokusai.cli.main import app
from hokusai.integrity import TAG_MANIFEST_DIGEST
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from tests.helpers import RunningGateway
from tests.sdk.support import MlflowRest, unique

pytestmark = pytest.mark.integration

ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"


def hokusai(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def registered_aliases(rest: MlflowRest, name: str) -> dict[str, str]:
    model = rest.call("GET", "registered-models/get", params={"name": name})["registered_model"]
    return {a["alias"]: a["version"] for a in model.get("aliases", [])}


def alias_events(gateway: RunningGateway, name: str) -> list[dict[str, Any]]:
    operator = Actor.operator(Origin.command("tests"))
    found = gateway.gateway.services.webhooks.events(operator, model_name=name, limit=1000)
    return [
        {"type": e.type, **e.payload["data"]}
        for e in reversed(found)
        if e.type.startswith("model_version.alias_")
    ]


def alias_audit(gateway: RunningGateway, key_id: str) -> list[tuple[str, str, int]]:
    rows = gateway.gateway.audit.read(key_id=key_id, limit=1000)
    return [
        (r["method"], r["action"], r["status"]) for r in reversed(rows) if r["path"] == ALIAS_PATH
    ]


@pytest.fixture
def two_versions(registry: ModelRegistry, saved_lead_model: Path) -> str:
    name = unique("LSCOR")
    registry.register_baseline(saved_lead_model, "lead_scoring", name)
    registry.register_baseline(saved_lead_model, "lead_scoring", name, alias=None)
    return name


def test_promote_set_and_delete_alias(
    registry: ModelRegistry,
    two_versions: str,
    mlflow_rest: MlflowRest,
    sdk_gateway: RunningGateway,
) -> None:
    name = two_versions
    key_id = registry.check()["id"]
    assert registry.get_latest_model(name).version == "2"  # no production yet: the newest

    promoted = registry.promote(name, 1)
    assert (promoted.name, promoted.version) == (name, "1")
    assert "production" in promoted.aliases
    assert registered_aliases(mlflow_rest, name) == {"baseline": "1", "production": "1"}
    assert registry.get_latest_model(name).version == "1"
    assert registry.get_model_version(f"{name}@production").version == "1"

    champion = registry.set_alias(name, "champion", "2")
    assert champion.version == "2" and "champion" in champion.aliases
    moved = registry.promote(name, "2", alias="champion")  # same alias again: no change
    assert moved.version == "2"
    registry.set_alias(name, "production", 2)  # moves from 1 to 2
    assert registered_aliases(mlflow_rest, name) == {
        "baseline": "1",
        "production": "2",
        "champion": "2",
    }

    registry.delete_alias(name, "champion")
    assert registered_aliases(mlflow_rest, name) == {"baseline": "1", "production": "2"}
    with pytest.raises(NotFoundError):
        registry.get_model_version(f"{name}@champion")
    # The version itself stays.
    assert registry.get_model_version(f"{name}/2").aliases == ["production"]
    # Deleting what is not there is an error, not a silent no-op.
    with pytest.raises(NotFoundError):
        registry.delete_alias(name, "champion")

    # Audited and evented like any registry write (the baseline alias of the registration
    # is the first alias_set event).
    # Each names its workspace and who moved the alias.
    by = {"workspace": "default", "by": {"key_id": key_id, "owner": "tests"}}
    # An alias_set event says what the version is: its manifest's digest, and its signer.
    of = {
        number: {
            "manifest_digest": registry.get_model_version(f"{name}/{number}").tags[
                TAG_MANIFEST_DIGEST
            ],
            "signer": None,
        }
        for number in ("1", "2")
    }
    assert alias_events(sdk_gateway, name) == [
        {
            "type": "model_version.alias_set",
            "name": name,
            "alias": "baseline",
            "version": "1",
            **of["1"],
            **by,
        },
        {
            "type": "model_version.alias_set",
            "name": name,
            "alias": "production",
            "version": "1",
            **of["1"],
            **by,
        },
        {
            "type": "model_version.alias_set",
            "name": name,
            "alias": "champion",
            "version": "2",
            **of["2"],
            **by,
        },
        {
            "type": "model_version.alias_set",
            "name": name,
            "alias": "champion",
            "version": "2",
            **of["2"],
            **by,
        },
        {
            "type": "model_version.alias_set",
            "name": name,
            "alias": "production",
            "version": "2",
            **of["2"],
            **by,
        },
        {"type": "model_version.alias_deleted", "name": name, "alias": "champion", **by},
    ]
    audited = alias_audit(sdk_gateway, key_id)
    assert audited[-5:] == [
        ("POST", "mlflow.write", 200),
        ("POST", "mlflow.write", 200),
        ("POST", "mlflow.write", 200),
        ("POST", "mlflow.write", 200),
        ("DELETE", "mlflow.write", 200),
    ]


def test_a_read_key_cannot_promote(
    sdk_gateway: RunningGateway, two_versions: str, mlflow_rest: MlflowRest
) -> None:
    reader = ModelRegistry(api_key=sdk_gateway.create_key(Scope.READ), api_url=sdk_gateway.url)
    with pytest.raises(PermissionDeniedError) as raised:
        reader.promote(two_versions, 2)
    assert "'write' role" in str(raised.value)
    with pytest.raises(PermissionDeniedError):
        reader.delete_alias(two_versions, "baseline")
    assert registered_aliases(mlflow_rest, two_versions) == {"baseline": "1"}


def test_aliases_are_checked_before_any_call(dead_url: str) -> None:
    offline = ModelRegistry(api_key="k", api_url=dead_url, max_retry_time=0)
    for bad_alias in ("has space", "latest", "v3", ""):
        with pytest.raises(ValidationError, match="alias must be"):
            offline.set_alias("LSCOR", bad_alias, 1)
    for bad_version in ("latest", "0", 0, -1, True, "1.5"):
        with pytest.raises(ValidationError, match="version must be a positive whole number"):
            offline.promote("LSCOR", bad_version)
    with pytest.raises(ValidationError, match="model name"):
        offline.delete_alias("bad/name", "production")


# ---- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(sdk_gateway: RunningGateway, team_key: str) -> dict[str, str]:
    return {"HOKUSAI_API_URL": sdk_gateway.url, "HOKUSAI_API_KEY": team_key, "COLUMNS": "250"}


def test_cli_promote_then_the_readme_example(
    cli_env: dict[str, str], two_versions: str, mlflow_rest: MlflowRest
) -> None:
    name = two_versions
    result = hokusai(cli_env, "models", "promote", name, "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"models:/{name}@production"
    assert registered_aliases(mlflow_rest, name)["production"] == "2"

    # The README: `hokusai models show LSCOR@production`.
    result = hokusai(cli_env, "models", "show", f"{name}@production", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["version"], shown["aliases"]) == ("2", ["production"])
    result = hokusai(cli_env, "models", "show", f"{name}@production")
    assert result.exit_code == 0, result.output
    assert f"models:/{name}/2" in result.stdout

    result = hokusai(cli_env, "models", "promote", name, "1", "--alias", "champion", "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["aliases"]) == {"baseline", "champion"}


def test_cli_alias_set_and_delete(
    cli_env: dict[str, str], two_versions: str, mlflow_rest: MlflowRest
) -> None:
    name = two_versions
    result = hokusai(cli_env, "models", "alias", "set", name, "staging", "2")
    assert result.exit_code == 0, result.output
    assert registered_aliases(mlflow_rest, name) == {"baseline": "1", "staging": "2"}
    result = hokusai(cli_env, "models", "alias", "delete", name, "staging")
    assert result.exit_code == 0, result.output
    assert registered_aliases(mlflow_rest, name) == {"baseline": "1"}
    result = hokusai(cli_env, "models", "alias", "delete", name, "staging")
    assert result.exit_code == 4
    assert "staging" in result.stderr.replace("\n", "")
    result = hokusai(cli_env, "models", "alias", "set", name, "latest", "1")
    assert result.exit_code == 2
    assert "alias must be" in result.stderr.replace("\n", "")


def test_cli_alias_with_a_read_key(
    cli_env: dict[str, str], two_versions: str, sdk_gateway: RunningGateway
) -> None:
    env = {**cli_env, "HOKUSAI_API_KEY": sdk_gateway.create_key(Scope.READ)}
    result = hokusai(env, "models", "promote", two_versions, "1")
    assert result.exit_code == 3
    assert "'write' role" in result.stderr.replace("\n", "")


def test_a_write_key_cannot_move_a_protected_alias(
    sdk_gateway: RunningGateway, two_versions: str, mlflow_rest: MlflowRest
) -> None:
    """promote() and `models promote` meet the workspace's protected aliases: a write key
    may move any other alias, and learns what refused it and who can grant it."""
    writer = ModelRegistry(api_key=sdk_gateway.create_key(Scope.WRITE), api_url=sdk_gateway.url)
    with pytest.raises(PermissionDeniedError) as raised:
        writer.promote(two_versions, 2)
    assert "alias 'production' is protected in workspace 'default'" in str(raised.value)
    assert raised.value.details["refused_by"] == "protected_alias"
    assert "an admin of workspace 'default'" in raised.value.details["granted_by"]
    writer.set_alias(two_versions, "candidate", 2)
    assert registered_aliases(mlflow_rest, two_versions) == {"baseline": "1", "candidate": "2"}


def test_models_list_shows_aliases(
    cli_env: dict[str, str], registry: ModelRegistry, saved_lead_model: Path
) -> None:
    """MLflow's version search answers without aliases; every listing fills them in."""
    name = unique("LISTED")
    token = unique("tok")
    first = registry.register_baseline(saved_lead_model, "lead_scoring", name)
    registry.register_tokenized_model(first.model_uri, name, token, "auroc", 0.5)
    registry.promote(name, 2)

    for listing in (
        ["models", "list", "--json"],  # the newest versions of all models
        ["models", "list", "--token-id", token, "--json"],
        ["models", "list", "--model-name", name, "--json"],
    ):
        result = hokusai(cli_env, *listing)
        assert result.exit_code == 0, result.output
        mine = {v["version"]: v["aliases"] for v in json.loads(result.stdout) if v["name"] == name}
        expected = {"1": ["baseline"], "2": ["production"]}
        if "--token-id" in listing:
            expected = {"2": ["production"]}
        assert mine == expected, listing

    result = hokusai(cli_env, "models", "list", "--token-id", token)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if name in line)
    assert "production" in row
    assert [v.aliases for v in registry.list_models_by_token(token)] == [["production"]]
    recent = {v.version: v.aliases for v in registry.list_recent_versions() if v.name == name}
    assert recent == {"1": ["baseline"], "2": ["production"]}


def test_a_registration_asking_for_a_protected_alias_fails_before_any_work(
    sdk_gateway: RunningGateway, saved_lead_model: Path, mlflow_rest: MlflowRest
) -> None:
    """A write key registering with alias='production' is told at once, not after the
    upload at the registration's last step, and nothing is made."""
    writer = ModelRegistry(api_key=sdk_gateway.create_key(Scope.WRITE), api_url=sdk_gateway.url)
    experiments = mlflow_rest.experiment_ids()
    name = unique("PROTECTED")
    with pytest.raises(PermissionDeniedError) as raised:
        writer.register_baseline(saved_lead_model, "lead_scoring", name, alias="production")
    assert "alias 'production' is protected in workspace 'default'" in str(raised.value)
    assert raised.value.details["refused_by"] == "protected_alias"
    assert mlflow_rest.experiment_ids() == experiments
    found = mlflow_rest.call("GET", "registered-models/search", params={"filter": f"name='{name}'"})
    assert found.get("registered_models", []) == []
