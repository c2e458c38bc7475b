"""Where the SDK's key and URL come from (arguments > environment > profile), that it never
changes the caller's environment, and ``hokusai login`` / ``hokusai whoami``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from hokusai import ConfigurationError, RegistryUnavailableError
from hokusai.cli.main import app
from hokusai.keys.scopes import Scope
from hokusai.sdk.config import DEFAULT_API_URL, resolve
from hokusai.sdk.registry import ModelRegistry
from tests.helpers import RunningGateway
from tests.sdk.support import LeadData, unique

pytestmark = pytest.mark.integration


def write_profiles(path: Path, profiles: dict[str, dict[str, str]], default: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"default_profile": default, "profiles": profiles}))


def unwrapped(text: str) -> str:
    """Console output with the terminal's line wrapping undone."""
    return text.replace("\n", "")


@pytest.fixture
def config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "config" / "hokusai.json"
    monkeypatch.setenv("HOKUSAI_CONFIG_FILE", str(path))
    return path


# ---- the environment is only read -----------------------------------------------------------


@pytest.mark.parametrize("caller_set", [True, False], ids=["caller-set-env", "clean-env"])
def test_environment_is_unchanged(
    caller_set: bool,
    sdk_gateway: RunningGateway,
    saved_lead_model: Path,
    leads: LeadData,
    dead_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = sdk_gateway.create_key(Scope.WRITE)
    if caller_set:
        # The caller's own MLflow settings point elsewhere; the SDK must neither use nor
        # change them.
        monkeypatch.setenv("HOKUSAI_API_KEY", key)
        monkeypatch.setenv("HOKUSAI_API_URL", sdk_gateway.url)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", dead_url)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", sdk_gateway.create_key(Scope.READ))
    before = dict(os.environ)
    tracking_uri_before = mlflow.get_tracking_uri()

    registry = ModelRegistry() if caller_set else ModelRegistry(key, sdk_gateway.url)
    assert dict(os.environ) == before
    name = unique("env")
    token = unique("env")
    result = registry.register_baseline(saved_lead_model, "lead_scoring", name)
    registry.register_tokenized_model(result.model_uri, name, token, "auroc", 0.5)
    assert [v.version for v in registry.list_versions(name)] == ["1", "2"]
    assert [v.version for v in registry.list_models_by_token(token)] == ["2"]
    assert [e["version"] for e in registry.get_model_lineage(name)] == ["1", "2"]
    assert registry.get_latest_model(name).version == "2"
    loaded = registry.load_model(result.model_uri)
    assert len(loaded.predict(leads.features)) == len(leads.features)
    assert registry.check()["scope"] == "write"
    registry.close()

    assert dict(os.environ) == before
    assert mlflow.get_tracking_uri() == tracking_uri_before
    if not caller_set:
        assert key not in os.environ.values()
        assert not any(n.startswith(("MLFLOW_TRACKING", "HOKUSAI_API")) for n in os.environ)


# ---- precedence: arguments > environment > profile ------------------------------------------


def test_precedence(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_profiles(
        config_path,
        {
            "default": {"api_url": "https://profile.example.com", "api_key": "profile-key"},
            "staging": {"api_url": "https://staging.example.com/api/mlflow", "api_key": "stg-key"},
        },
        default="default",
    )
    config = resolve()
    assert (config.api_url, config.api_key) == ("https://profile.example.com", "profile-key")
    assert config.key_source == config.url_source == "profile default"

    monkeypatch.setenv("HOKUSAI_API_KEY", "env-key")
    monkeypatch.setenv("HOKUSAI_API_URL", "https://env.example.com/")
    config = resolve()
    assert (config.api_url, config.api_key) == ("https://env.example.com", "env-key")
    assert config.key_source == config.url_source == "environment"

    config = resolve(api_key="arg-key", api_url="https://arg.example.com")
    assert (config.api_url, config.api_key) == ("https://arg.example.com", "arg-key")
    assert config.key_source == config.url_source == "argument"

    # Each value on its own: the key from an argument, the URL still from the environment.
    config = resolve(api_key="arg-key")
    assert (config.api_url, config.key_source, config.url_source) == (
        "https://env.example.com",
        "argument",
        "environment",
    )
    monkeypatch.delenv("HOKUSAI_API_URL")
    config = resolve()
    assert (config.api_url, config.url_source) == ("https://profile.example.com", "profile default")
    assert config.key_source == "environment"

    # Profiles: the profile argument > HOKUSAI_PROFILE > the file's default.
    monkeypatch.delenv("HOKUSAI_API_KEY")
    monkeypatch.setenv("HOKUSAI_PROFILE", "staging")
    config = resolve()
    assert (config.api_url, config.api_key) == ("https://staging.example.com", "stg-key")
    assert config.tracking_uri == "https://staging.example.com/api/mlflow"
    assert config.key_source == "profile staging"
    assert resolve(profile="default").api_key == "profile-key"
    with pytest.raises(ConfigurationError) as raised:
        resolve(profile="prod")
    assert "no profile 'prod'" in str(raised.value)
    assert "hokusai login --profile prod" in str(raised.value)
    assert str(config_path) in str(raised.value)


def test_default_url_and_url_checks(config_path: Path) -> None:
    config = resolve(api_key="k")
    assert (config.api_url, config.url_source) == (DEFAULT_API_URL, "default")
    assert resolve(api_key="k", api_url=" http://h:8080/api/mlflow/ ").api_url == "http://h:8080"
    for bad in ("registry.example.com", "ftp://registry.example.com", "http://"):
        with pytest.raises(ConfigurationError) as raised:
            resolve(api_key="k", api_url=bad)
        assert "HOKUSAI_API_URL must be an http(s) URL" in str(raised.value)
    config_path.parent.mkdir(parents=True)
    config_path.write_text("{not json")
    with pytest.raises(ConfigurationError) as raised:
        resolve(api_key="k")
    assert f"cannot read the Hokusai config file {config_path}" in str(raised.value)
    config_path.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="is not a JSON object"):
        resolve(api_key="k")


def test_precedence_decides_which_key_is_sent(
    sdk_gateway: RunningGateway, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {
        who: sdk_gateway.create_key(Scope.READ, owner=who)
        for who in ("profile-owner", "env-owner", "arg-owner")
    }
    write_profiles(
        config_path,
        {"default": {"api_url": sdk_gateway.url, "api_key": keys["profile-owner"]}},
        default="default",
    )
    assert ModelRegistry().check()["owner"] == "profile-owner"
    monkeypatch.setenv("HOKUSAI_API_KEY", keys["env-owner"])
    assert ModelRegistry().check()["owner"] == "env-owner"
    assert ModelRegistry(api_key=keys["arg-owner"]).check()["owner"] == "arg-owner"


def test_constructor_makes_no_network_call(dead_url: str) -> None:
    registry = ModelRegistry(api_key="any-key", api_url=dead_url, max_retry_time=0)
    assert registry.api_url == dead_url
    assert registry.tracking_uri == dead_url + "/api/mlflow"
    with pytest.raises(RegistryUnavailableError):
        registry.check()


# ---- hokusai login / whoami ---------------------------------------------------------------------


def test_login_writes_a_private_profile_and_whoami_uses_it(
    sdk_gateway: RunningGateway, tmp_path: Path
) -> None:
    key = sdk_gateway.create_key(Scope.WRITE, owner="login-owner")
    config = tmp_path / "xdg" / "hokusai" / "config.json"
    runner = CliRunner()
    env = {"HOKUSAI_CONFIG_FILE": str(config)}

    result = runner.invoke(
        app, ["login", "--api-url", sdk_gateway.url + "/api/mlflow", "--api-key", key], env=env
    )
    assert result.exit_code == 0, result.output
    said = unwrapped(result.stderr)
    assert "login-owner" in said
    assert f"profile 'default' saved in {config}" in said
    assert key not in result.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    saved = json.loads(config.read_text())
    assert saved["default_profile"] == "default"
    assert saved["profiles"]["default"] == {"api_url": sdk_gateway.url, "api_key": key}

    result = runner.invoke(app, ["whoami", "--json"], env=env)
    assert result.exit_code == 0, result.output
    identity = json.loads(result.stdout)
    assert identity["owner"] == "login-owner"
    assert identity["scope"] == "write"
    assert identity["state"] == "active"
    result = runner.invoke(app, ["whoami"], env=env)
    assert result.exit_code == 0, result.output
    assert "login-owner" in result.stdout and sdk_gateway.url in result.stdout

    # A second profile, not the default: the default stays, --profile picks the other.
    other = sdk_gateway.create_key(Scope.READ, owner="second-owner")
    result = runner.invoke(
        app,
        ["login", "--api-url", sdk_gateway.url, "--api-key", other, "--profile", "second"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    result = runner.invoke(app, ["whoami", "--json", "--profile", "second"], env=env)
    assert json.loads(result.stdout)["owner"] == "second-owner"


def test_login_with_a_bad_key_saves_nothing(sdk_gateway: RunningGateway, tmp_path: Path) -> None:
    key = sdk_gateway.create_key(Scope.WRITE)
    sdk_gateway.gateway.keys.revoke(key)
    config = tmp_path / "hokusai" / "config.json"
    result = CliRunner().invoke(
        app,
        ["login", "--api-url", sdk_gateway.url, "--api-key", key],
        env={"HOKUSAI_CONFIG_FILE": str(config)},
    )
    assert result.exit_code == 3
    assert "was revoked" in unwrapped(result.stderr)
    assert not config.exists()
    result = CliRunner().invoke(app, ["whoami"], env={"HOKUSAI_CONFIG_FILE": str(config)})
    assert result.exit_code == 2
    assert "No API key: pass --api-key" in unwrapped(result.stderr)
