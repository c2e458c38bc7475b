"""Registration as a resumable saga: a failure after any step, or a crash, then the same
registration again, leaves exactly one run and one model version; ``cleanup_failed`` (and
``hokusai gc``) removes what abandoned registrations left and nothing else."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hokusai import RegistrationError
from hokusai.cli.main import app
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.saga import after_each_step
from tests.helpers import RunningGateway
from tests.sdk.support import MlflowRest, unique

pytestmark = pytest.mark.integration

BASELINE_STEPS = [
    "experiment",
    "run",
    "metrics",
    "model_artifact",
    "registered_model",
    "model_version",
    "ready",
    "alias",
    "finish",
]


class InjectedFault(Exception):
    pass


class Crash(BaseException):
    """Like a killed process: not an Exception, so no failure handler runs."""


def fail_once_after(step: str, error: BaseException) -> Callable[[str], None]:
    fired: list[str] = []

    def after_step(name: str) -> None:
        if name == step and not fired:
            fired.append(name)
            raise error

    return after_step


def assert_exactly_one(rest: MlflowRest, registration_id: str, name: str) -> dict[str, Any]:
    """One version and one run carry the registration id; the run finished complete."""
    versions = rest.versions_with_registration(registration_id)
    assert [(v["name"], v["version"]) for v in versions] == [(name, "1")]
    runs = rest.runs_with_registration(registration_id)
    assert len(runs) == 1, [r["info"]["run_id"] for r in runs]
    run = runs[0]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["lifecycle_stage"] == "active"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["hokusai.registration_status"] == "complete"
    assert versions[0]["run_id"] == run["info"]["run_id"]
    assert versions[0]["status"] == "READY"
    return run


@pytest.mark.parametrize("step", BASELINE_STEPS)
def test_failure_after_each_step_then_resume(
    step: str, registry: ModelRegistry, mlflow_rest: MlflowRest, saved_lead_model: Path
) -> None:
    name = unique("saga")
    registration_id = unique("reg")
    # The registrations' experiment exists already (as it does after the first one): it
    # is never a leftover of this registration.
    experiment = "hokusai-registrations"
    found = mlflow_rest.client.get(
        "/api/mlflow/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment}
    )
    if found.status_code == 404:
        mlflow_rest.call("POST", "experiments/create", json={"name": experiment})
    fault = fail_once_after(step, InjectedFault(f"injected after {step}"))

    def register() -> Any:
        with after_each_step(fault):
            return registry.register_baseline(
                saved_lead_model,
                "lead_scoring",
                name,
                metrics={"auroc": 0.81},
                registration_id=registration_id,
            )

    with pytest.raises(RegistrationError) as raised:
        register()
    error = raised.value
    assert error.step == step
    assert error.registration_id == registration_id
    assert isinstance(error.__cause__, InjectedFault)
    message = str(error)
    assert f"failed at step '{step}'" in message
    position = BASELINE_STEPS.index(step)
    left = error.left_behind
    assert "experiment_id" not in left
    if position == 0:
        assert left == {}
        assert "Nothing was left behind." in message
        assert "hokusai gc" not in message
    else:
        assert f"registration_id={registration_id!r}" in message
        assert "hokusai gc" in message
    runs = mlflow_rest.runs_with_registration(registration_id)
    if position < BASELINE_STEPS.index("run"):
        assert "run_id" not in left
        assert runs == []
    else:
        assert [r["info"]["run_id"] for r in runs] == [left["run_id"]]
        assert runs[0]["info"]["status"] == "FAILED"
        tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
        assert tags["hokusai.registration_status"] == "failed"
        assert tags["hokusai.registration_failed_step"] == step
        assert f"injected after {step}" in tags["hokusai.registration_error"]
        assert f"run_id={left['run_id']}" in message
    if position < BASELINE_STEPS.index("model_version"):
        assert "model_version" not in left
        assert mlflow_rest.versions_with_registration(registration_id) == []
    else:
        assert left["model_version"] == f"{name}/1"
        assert "registered_model" not in left
        assert f"model_version={name}/1" in message
    # The registered model is a leftover only between its creation and the version's.
    if position == BASELINE_STEPS.index("registered_model"):
        assert left["registered_model"] == name
    elif position < BASELINE_STEPS.index("registered_model"):
        assert "registered_model" not in left

    result = register()
    assert (result.name, result.version) == (name, "1")
    assert result.registration_id == registration_id
    run = assert_exactly_one(mlflow_rest, registration_id, name)
    assert result.run_id == run["info"]["run_id"]
    if position >= BASELINE_STEPS.index("run"):
        assert result.run_id == left["run_id"]
    # The metric was logged once, however often the metrics step ran.
    history = mlflow_rest.call(
        "GET", "metrics/get-history", params={"run_id": result.run_id, "metric_key": "auroc"}
    )["metrics"]
    assert [m["value"] for m in history] == [0.81]
    tags = mlflow_rest.version_tags(name, "1")
    assert tags["hokusai_model_type"] == "lead_scoring"
    model = mlflow_rest.call("GET", "registered-models/get", params={"name": name})
    assert model["registered_model"]["aliases"] == [{"alias": "baseline", "version": "1"}]
    files = mlflow_rest.artifact_files(result.source.removeprefix("mlflow-artifacts:/"))
    assert any(f.endswith("/model/MLmodel") for f in files)


def test_crash_after_model_version_then_resume(
    registry: ModelRegistry, mlflow_rest: MlflowRest, saved_lead_model: Path
) -> None:
    name = unique("crash")
    registration_id = unique("reg")
    with after_each_step(fail_once_after("model_version", Crash())), pytest.raises(Crash):
        registry.register_baseline(
            saved_lead_model, "lead_scoring", name, registration_id=registration_id
        )
    # Nothing marked it failed: the run is still running, the version exists.
    runs = mlflow_rest.runs_with_registration(registration_id)
    assert len(runs) == 1
    assert runs[0]["info"]["status"] == "RUNNING"
    tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    assert tags["hokusai.registration_status"] == "in_progress"
    assert len(mlflow_rest.versions_with_registration(registration_id)) == 1

    result = registry.register_baseline(
        saved_lead_model, "lead_scoring", name, registration_id=registration_id
    )
    assert result.version == "1"
    assert_exactly_one(mlflow_rest, registration_id, name)


def test_completed_registration_run_again_is_the_same_version(
    registry: ModelRegistry, mlflow_rest: MlflowRest, saved_lead_model: Path
) -> None:
    name = unique("again")
    registration_id = unique("reg")
    first = registry.register_baseline(
        saved_lead_model, "lead_scoring", name, registration_id=registration_id
    )
    second = registry.register_baseline(
        saved_lead_model, "lead_scoring", name, registration_id=registration_id
    )
    assert (second.version, second.run_id) == (first.version, first.run_id)
    assert_exactly_one(mlflow_rest, registration_id, name)
    # A new registration id is a new version.
    third = registry.register_baseline(saved_lead_model, "lead_scoring", name)
    assert third.version == "2"
    assert third.run_id != first.run_id


def test_cleanup_removes_only_abandoned_registrations(
    registry: ModelRegistry,
    mlflow_rest: MlflowRest,
    saved_lead_model: Path,
    sdk_gateway: RunningGateway,
    team_key: str,
) -> None:
    def register(fault: tuple[str, BaseException] | None) -> str:
        """Register under a new id, failing as told; the registration id."""
        registration_id = unique("gc")
        hook = fail_once_after(*fault) if fault else None
        with after_each_step(hook), contextlib.suppress(RegistrationError, Crash):
            registry.register_baseline(
                saved_lead_model, "lead_scoring", unique("gc"), registration_id=registration_id
            )
        return registration_id

    def run_of(registration_id: str) -> dict[str, Any]:
        runs = mlflow_rest.runs_with_registration(registration_id)
        assert len(runs) == 1
        return runs[0]

    completed = register(None)
    failed_after_run = register(("run", InjectedFault("after run")))
    failed_after_upload = register(("model_artifact", InjectedFault("after upload")))
    abandoned = register(("metrics", Crash()))
    crashed_with_version = register(("model_version", Crash()))

    leftovers = {
        run_of(r)["info"]["run_id"] for r in (failed_after_run, failed_after_upload, abandoned)
    }
    kept = {run_of(r)["info"]["run_id"] for r in (completed, crashed_with_version)}
    upload_run = run_of(failed_after_upload)
    upload_root = upload_run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    assert mlflow_rest.artifact_files(upload_root), "the model files were uploaded"
    completed_run = run_of(completed)
    completed_root = completed_run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    completed_files = mlflow_rest.artifact_files(completed_root)
    assert completed_files

    # Old enough for --older-than 1s.
    newest_start = max(
        int(run_of(r)["info"]["start_time"])
        for r in (failed_after_run, failed_after_upload, abandoned)
    )
    deadline = time.monotonic() + 10
    while time.time() * 1000 - newest_start < 1500:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    planned = registry.cleanup_failed(older_than=timedelta(0), dry_run=True)
    planned_runs = {entry["run_id"] for entry in planned}
    assert leftovers <= planned_runs
    assert not kept & planned_runs
    by_run = {entry["run_id"]: entry for entry in planned}
    assert by_run[run_of(failed_after_run)["info"]["run_id"]]["status"] == "failed"
    assert by_run[run_of(abandoned)["info"]["run_id"]]["status"] == "in_progress"
    assert by_run[run_of(failed_after_upload)["info"]["run_id"]]["registration_id"] == (
        failed_after_upload
    )
    # A dry run deletes nothing.
    for registration_id in (failed_after_run, failed_after_upload, abandoned):
        assert run_of(registration_id)["info"]["lifecycle_stage"] == "active"
    assert mlflow_rest.artifact_files(upload_root)

    result = CliRunner().invoke(
        app,
        ["gc", "--older-than", "1s", "--dry-run", "--json"],
        env={"HOKUSAI_API_URL": sdk_gateway.url, "HOKUSAI_API_KEY": team_key},
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {entry["run_id"] for entry in listed} == planned_runs
    assert run_of(failed_after_run)["info"]["lifecycle_stage"] == "active"

    removed = registry.cleanup_failed(older_than=timedelta(0))
    assert {entry["run_id"] for entry in removed} == planned_runs
    for registration_id in (failed_after_run, failed_after_upload, abandoned):
        assert run_of(registration_id)["info"]["lifecycle_stage"] == "deleted"
    assert mlflow_rest.artifact_files(upload_root) == []
    # What completed, or made a version, is untouched.
    assert run_of(completed)["info"]["lifecycle_stage"] == "active"
    assert run_of(completed)["info"]["status"] == "FINISHED"
    assert mlflow_rest.artifact_files(completed_root) == completed_files
    assert run_of(crashed_with_version)["info"]["lifecycle_stage"] == "active"
    assert len(mlflow_rest.versions_with_registration(completed)) == 1
    assert len(mlflow_rest.versions_with_registration(crashed_with_version)) == 1
    # Nothing is left to remove; a young leftover is not touched.
    assert not {e["run_id"] for e in registry.cleanup_failed(timedelta(0))} & planned_runs
    young = register(("run", InjectedFault("after run")))
    assert run_of(young)["info"]["run_id"] not in {
        e["run_id"] for e in registry.cleanup_failed(timedelta(hours=1), dry_run=True)
    }
