"""What ``hokusai`` and ``hokusai.core`` export, and the SDK's pieces that need no server:
the token rule, the registration plan, the saga's fault seam, the registration error's
cause and the scratch directory of a loaded model."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

import hokusai
import hokusai.core
from hokusai.sdk import version_files
from hokusai.sdk.errors import PermissionDeniedError, RegistrationError, registration_failure
from hokusai.sdk.model_files import TAG_SERIALIZATION_FORMAT
from hokusai.sdk.registration import RegistrationPlan
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.saga import TAG_REGISTRATION_ID, _after_step, after_each_step
from hokusai.tokens import TAG_READY, measurement_tags, meets_benchmark
from hokusai.webhooks.events import is_ready_for_deploy, version_data

UPLOAD_STEPS = ["experiment", "run", "metrics", "model_artifact"]
SHARED_STEPS = ["registered_model", "model_version", "ready", "alias", "finish"]


def test_hokusai_exports_exactly_the_names_it_defines() -> None:
    # As httpx pins its own: whatever the package imports for its users is in __all__,
    # and __all__ names nothing else; sorted (``__version__`` last: ``_`` sorts after
    # the capitals).
    public = sorted(
        name
        for name, value in vars(hokusai).items()
        if (not name.startswith("_") or name == "__version__") and not isinstance(value, ModuleType)
    )
    assert hokusai.__all__ == public
    assert {"ModelRegistry", "RegistrationError", "ValidationError", "__version__"} <= set(public)


def test_hokusai_core_exports_the_same_objects_as_hokusai() -> None:
    assert hokusai.core.__all__ == hokusai.__all__
    for name in hokusai.__all__:
        assert getattr(hokusai.core, name) is getattr(hokusai, name), name


@pytest.mark.parametrize(
    ("measured", "benchmark", "lower_is_better", "ready"),
    [
        (0.8, 0.8, False, True),
        (0.81, 0.8, False, True),
        (0.79, 0.8, False, False),
        (0.3, 0.3, True, True),
        (0.29, 0.3, True, True),
        (0.31, 0.3, True, False),
    ],
)
def test_one_ready_rule_for_the_sdk_and_the_webhooks(
    measured: float, benchmark: float, lower_is_better: bool, ready: bool
) -> None:
    assert meets_benchmark(measured, benchmark, lower_is_better=lower_is_better) is ready
    tags = measurement_tags(measured, benchmark, lower_is_better)
    assert tags[TAG_READY] == ("true" if ready else "false")
    # The webhooks read what the SDK wrote and come to the same verdict.
    version = {
        "name": "LSCOR",
        "version": "1",
        "tags": {
            "hokusai_token_id": "LSCOR",
            "benchmark_metric": "auroc",
            "benchmark_value": repr(benchmark),
            "lower_is_better": "true" if lower_is_better else "false",
            **tags,
        },
    }
    assert is_ready_for_deploy(version_data(version)) is ready


def test_a_plan_to_upload_takes_every_step_and_tags_its_version() -> None:
    plan = RegistrationPlan(
        LogisticRegression().fit([[0.0], [1.0]], [0, 1]),
        "LSCOR",
        kind="baseline",
        version_tags={"hokusai_model_type": "lead_scoring"},
        requested_id="reg-1",
    )
    assert plan.uploads
    assert [name for name, _ in plan.steps()] == UPLOAD_STEPS + SHARED_STEPS
    assert plan.registration_id == "reg-1"
    assert plan.tags["hokusai_model_type"] == "lead_scoring"
    assert plan.tags[TAG_REGISTRATION_ID] == "reg-1"
    assert plan.tags[TAG_SERIALIZATION_FORMAT] == plan.stored_format
    assert plan.stored_format in ("skops", "cloudpickle")


def test_a_plan_for_a_stored_model_starts_from_its_source() -> None:
    plan = RegistrationPlan("runs:/abc/model", "LSCOR", kind="tokenized")
    assert not plan.uploads
    assert [name for name, _ in plan.steps()] == ["source", *SHARED_STEPS]
    # No registration id asked for: a new one each plan.
    assert len(plan.registration_id) == 32
    assert RegistrationPlan("runs:/abc/model", "LSCOR", kind="tokenized").registration_id != (
        plan.registration_id
    )
    assert TAG_SERIALIZATION_FORMAT not in plan.tags


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"requested_id": "no spaces"}, "registration_id may hold"),
        ({"alias": "latest"}, "alias must be"),
        ({"serialization_format": "pickle"}, "serialization_format applies to a model object"),
    ],
)
def test_a_plan_is_checked_when_made(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(hokusai.ValidationError, match=message):
        RegistrationPlan("models:/LSCOR/1", "LSCOR", kind="tokenized", **arguments)


def test_the_fault_seam_holds_only_inside_its_block() -> None:
    def hook(step: str) -> None:
        raise AssertionError(step)

    assert _after_step.get() is None
    with pytest.raises(KeyError), after_each_step(hook):
        assert _after_step.get() is hook
        raise KeyError("left by an error")
    assert _after_step.get() is None


def test_a_registration_error_keeps_its_cause_as_its_cause() -> None:
    denied = PermissionDeniedError("no", status_code=403, error_code="PERMISSION_DENIED")
    error = registration_failure("experiment", "reg-1", denied, {})
    assert isinstance(error, RegistrationError)
    assert isinstance(error, PermissionDeniedError)
    assert error.__cause__ is denied
    assert error.cause is denied
    assert error.status_code == 403


def _stored_version() -> ModelVersion:
    return ModelVersion(
        name="LSCOR",
        version="1",
        run_id="run",
        source="mlflow-artifacts:/1/run/artifacts/model",
        status="READY",
        created_at_ms=0,
        tags={},
        aliases=[],
    )


class _Loaded:
    """Stands for an ``mlflow.pyfunc`` model: something a weak reference can follow."""


def test_a_loaded_models_files_go_with_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc

    downloaded: list[Path] = []

    def download(transport: object, remote: str, local: Path, *, digest: bool) -> dict[str, Any]:
        local.mkdir(parents=True)
        (local / "MLmodel").write_text("flavors: {}\n")
        downloaded.append(local)
        return {}

    monkeypatch.setattr(version_files, "download_directory", download)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda path: _Loaded())
    with ModelRegistry(api_key="hk_live_unused", api_url="http://127.0.0.1:9") as registry:
        model = registry.load_model(_stored_version(), verify="none")
    directory = downloaded[0].parent
    assert (directory / "model" / "MLmodel").exists()
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
    assert not directory.exists()


def test_a_model_that_fails_to_load_leaves_no_files(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc

    downloaded: list[Path] = []

    def download(transport: object, remote: str, local: Path, *, digest: bool) -> dict[str, Any]:
        local.mkdir(parents=True)
        downloaded.append(local)
        return {}

    def refuse(path: str) -> object:
        raise OSError("not a model")

    monkeypatch.setattr(version_files, "download_directory", download)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", refuse)
    with (
        ModelRegistry(api_key="hk_live_unused", api_url="http://127.0.0.1:9") as registry,
        pytest.raises(OSError, match="not a model"),
    ):
        registry.load_model(_stored_version(), verify="none")
    assert not downloaded[0].parent.exists()
