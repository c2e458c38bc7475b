"""Fixtures of the SDK tests: a gateway on the SQLite store in front of the session's real
MLflow server, keys, a lead-scoring model, and direct looks at what MLflow holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway, free_port, sqlite_gateway
from tests.sdk.support import LeadData, MlflowRest, make_leads


@pytest.fixture(autouse=True)
def _no_user_profile(
    _isolated_environment: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The user's own profile (``hokusai login``) must not reach a test either."""
    monkeypatch.setenv("HOKUSAI_CONFIG_FILE", str(tmp_path / "no-profile" / "config.json"))


@pytest.fixture(scope="module")
def sdk_gateway(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """One gateway per test module, on the SQLite store."""
    with sqlite_gateway(tmp_path_factory.mktemp("gateway"), mlflow_server.url) as running:
        yield running


@pytest.fixture
def team_key(sdk_gateway: RunningGateway) -> str:
    """A team member's key: registers and promotes (``promote`` ⊃ ``write``; the
    default workspace protects ``production`` and ``champion``)."""
    return sdk_gateway.create_key(Scope.PROMOTE)


@pytest.fixture
def registry(sdk_gateway: RunningGateway, team_key: str) -> Iterator[ModelRegistry]:
    with ModelRegistry(api_key=team_key, api_url=sdk_gateway.url, max_retry_time=10) as client:
        yield client


@pytest.fixture
def mlflow_rest(sdk_gateway: RunningGateway) -> Iterator[MlflowRest]:
    """MLflow's REST API through the gateway with an admin key, to check what was stored."""
    with MlflowRest(sdk_gateway.url, sdk_gateway.create_key(Scope.ADMIN)) as rest:
        yield rest


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: any network call there fails."""
    return f"http://127.0.0.1:{free_port()}"


# ---- the lead-scoring model ----------------------------------------------------------------


@pytest.fixture(scope="session")
def leads() -> LeadData:
    return make_leads(400, seed=7)


@pytest.fixture(scope="session")
def lead_model(leads: LeadData) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(leads.features, leads.labels)


@pytest.fixture(scope="session")
def saved_lead_model(
    lead_model: LogisticRegression, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The model saved once as an MLflow model directory (requirements given, not inferred,
    which keeps saving fast); the SDK copies such a directory as it is."""
    import mlflow.sklearn
    import sklearn

    path = tmp_path_factory.mktemp("saved") / "lead-model"
    mlflow.sklearn.save_model(
        lead_model, str(path), pip_requirements=[f"scikit-learn=={sklearn.__version__}"]
    )
    return path
