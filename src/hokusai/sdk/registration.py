"""One registration: a :class:`RegistrationPlan` (what to make) and the steps that make it.

A model to upload goes experiment -> run -> metrics -> model_artifact; a model already
stored (a ``runs:/``, ``models:/`` or ``mlflow-artifacts:/`` URI) goes through ``source``
instead. Both then go registered_model -> model_version -> ready -> alias -> finish. Each
step is a function of the plan and of what the registration has made so far
(:class:`~hokusai.sdk.saga.SagaState`), and first looks for what an earlier attempt with
the same registration id made; :mod:`hokusai.sdk.saga` runs them and reports a failure.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hokusai.integrity import TAG_MANIFEST_DIGEST, TAG_SIGNER, manifest_path
from hokusai.sdk import mlflow_api as api
from hokusai.sdk.artifacts import artifact_root_path, upload_bytes, upload_with_manifest
from hokusai.sdk.errors import ValidationError
from hokusai.sdk.model_files import (
    TAG_SERIALIZATION_FORMAT,
    check_serialization_format,
    save_model_directory,
)
from hokusai.sdk.references import UPLOADED_MODEL_PATH, is_model_uri, resolve_source
from hokusai.sdk.results import RegistrationResult
from hokusai.sdk.saga import (
    STATUS_COMPLETE,
    STATUS_IN_PROGRESS,
    TAG_KIND,
    TAG_MODEL_UPLOADED,
    TAG_REGISTRATION_ID,
    TAG_STATUS,
    SagaState,
    Step,
    find_version,
    run_saga,
)
from hokusai.sdk.transport import Transport
from hokusai.sdk.validation import check_alias, check_model_argument, check_registration_id
from hokusai.sdk.version_signing import upload_signature
from hokusai.signing import sign_manifest
from hokusai.tokens import measurement_tags

DEFAULT_EXPERIMENT = "hokusai-registrations"
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Benchmark:
    """The metric a token model is judged on, and the value it must reach."""

    metric_name: str
    value: float
    lower_is_better: bool


@dataclass(frozen=True)
class RegistrationPlan:
    """What one registration makes: a version of ``model_name`` from ``model`` (a model
    object or local path to upload, or the URI of a stored model), with these tags, run
    metrics and params, and ``alias`` pointed at it.

    Made, the plan has been checked (nothing is sent for an invalid one) and has its
    ``registration_id``: the one asked for, else a new one.
    """

    model: Any
    model_name: str
    kind: str
    version_tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    alias: str | None = None
    experiment_name: str | None = None
    # As asked for; the format the model is stored in is ``stored_format``.
    serialization_format: str | None = None
    # For a stored model: the benchmark its run's measurement is recorded against.
    benchmark: Benchmark | None = None
    requested_id: str | None = None
    # A PEM private key: the uploaded model's manifest is signed with it.
    signing_key: bytes | None = field(default=None, repr=False)
    registration_id: str = field(init=False)
    stored_format: str | None = field(init=False)

    def __post_init__(self) -> None:
        # Frozen: the two derived fields are set once, here.
        registration_id = check_registration_id(self.requested_id or uuid.uuid4().hex)
        object.__setattr__(self, "registration_id", registration_id)
        if self.alias is not None:
            check_alias(self.alias)
        stored_format: str | None = None
        if self.uploads:
            check_model_argument(self.model)
            stored_format = check_serialization_format(self.model, self.serialization_format)
        elif self.serialization_format is not None:
            raise ValidationError(
                "serialization_format applies to a model object or file, not to an already "
                f"registered {self.model}"
            )
        elif self.signing_key is not None:
            raise ValidationError(
                "a signing key signs a model this registration uploads; sign a version of an "
                f"already stored model ({self.model}) with ModelRegistry.sign_version"
            )
        object.__setattr__(self, "stored_format", stored_format)

    @property
    def uploads(self) -> bool:
        """Whether this registration uploads the model (else it names a stored one)."""
        return not is_model_uri(self.model)

    @property
    def tags(self) -> dict[str, str]:
        """The new version's tags, before any measurement of a stored model's run."""
        tags = {**self.version_tags, TAG_REGISTRATION_ID: self.registration_id}
        if self.stored_format is not None:
            tags[TAG_SERIALIZATION_FORMAT] = self.stored_format
        return tags

    def steps(self) -> list[Step[RegistrationPlan]]:
        first: list[Step[RegistrationPlan]] = (
            [
                ("experiment", find_or_create_experiment),
                ("run", find_or_create_run),
                ("metrics", log_metrics),
                ("model_artifact", upload_model),
            ]
            if self.uploads
            else [("source", find_source)]
        )
        return [
            *first,
            ("registered_model", ensure_registered_model),
            ("model_version", find_or_create_version),
            ("ready", wait_until_ready),
            ("alias", set_alias),
            ("finish", finish),
        ]


def register(transport: Transport, plan: RegistrationPlan) -> RegistrationResult:
    """Carry out ``plan``; the version it made (or had made, when resumed)."""
    state = SagaState(registration_id=plan.registration_id, model_name=plan.model_name)
    run_saga(transport, plan, state, plan.steps())
    assert state.version is not None and state.source is not None
    return RegistrationResult(
        name=plan.model_name,
        version=state.version,
        run_id=state.run_id,
        model_uri=f"models:/{plan.model_name}/{state.version}",
        registration_id=plan.registration_id,
        source=state.source,
        tags={**plan.tags, **state.version_tags},
    )


# ---- the steps, in the order they run ---------------------------------------------------


def find_or_create_experiment(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    state.experiment_id, state.created_experiment = api.get_or_create_experiment(
        t, plan.experiment_name or DEFAULT_EXPERIMENT
    )


def find_or_create_run(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    assert state.experiment_id is not None
    found = api.search_runs(
        t,
        [state.experiment_id],
        f"tags.`{TAG_REGISTRATION_ID}` = {api.quote_filter(plan.registration_id)}",
    )
    if found:
        info = found[0]["info"]
        if info["status"] != "RUNNING":
            api.set_run_status(t, info["run_id"], "RUNNING")
        api.set_run_tags(t, info["run_id"], {TAG_STATUS: STATUS_IN_PROGRESS})
    else:
        info = api.create_run(
            t,
            state.experiment_id,
            f"register-{plan.model_name}",
            {
                TAG_REGISTRATION_ID: plan.registration_id,
                TAG_STATUS: STATUS_IN_PROGRESS,
                TAG_KIND: plan.kind,
            },
        )["info"]
    state.run_id = info["run_id"]
    state.artifact_root = artifact_root_path(info["artifact_uri"])


def log_metrics(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    """Logs only what the run does not have yet: a metric logged twice has two values."""
    assert state.run_id is not None
    data = api.get_run(t, state.run_id).get("data", {})
    logged_metrics = {m["key"] for m in data.get("metrics", [])}
    logged_params = {p["key"] for p in data.get("params", [])}
    todo_metrics = {k: v for k, v in plan.metrics.items() if k not in logged_metrics}
    todo_params = {k: v for k, v in plan.params.items() if k not in logged_params}
    if todo_metrics or todo_params:
        api.log_metrics_and_params(t, state.run_id, todo_metrics, todo_params)


def upload_model(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    """Uploads the model files and, beside them, their manifest, once: a run tag records
    that they are all there, with the manifest's digest."""
    assert state.run_id is not None and state.artifact_root is not None
    remote = f"{state.artifact_root}/{UPLOADED_MODEL_PATH}"
    state.source = f"mlflow-artifacts:/{remote}"
    run_tags = api.tag_dict(api.get_run(t, state.run_id)["data"].get("tags"))
    if run_tags.get(TAG_MODEL_UPLOADED) == "true":
        state.manifest_digest = run_tags.get(TAG_MANIFEST_DIGEST)
        state.signer = run_tags.get(TAG_SIGNER)
        return
    with tempfile.TemporaryDirectory(prefix="hokusai-model-") as scratch:
        local = Path(scratch) / "model"
        save_model_directory(plan.model, local, serialization_format=plan.serialization_format)
        # Digested from the files just made: what the registry stores is checked
        # against what was made.
        manifest = upload_with_manifest(t, local, remote)
        # Signed after the upload: the key was read and checked when the registry was
        # made (``version_signing.signing_key``), so one that cannot sign never got here.
        signature = (
            sign_manifest(manifest.to_json(), plan.signing_key)
            if plan.signing_key is not None
            else None
        )
        upload_bytes(t, manifest.to_json(), manifest_path(remote))
    uploaded = {TAG_MODEL_UPLOADED: "true", TAG_MANIFEST_DIGEST: manifest.digest}
    if signature is not None:
        upload_signature(t, signature, remote)
        uploaded[TAG_SIGNER] = signature.signer
        state.signer = signature.signer
    api.set_run_tags(t, state.run_id, uploaded)
    state.manifest_digest = manifest.digest


def find_source(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    """A stored model: its files, its run, and that run's measurement of the benchmark."""
    stored = resolve_source(t, plan.model)
    state.source, state.run_id = stored.source, stored.run_id
    state.manifest_digest, state.signer = stored.manifest_digest, stored.signer
    benchmark = plan.benchmark
    if benchmark is None or not state.run_id:
        return
    run_metrics = {
        m["key"]: m["value"]
        for m in api.get_run(t, state.run_id).get("data", {}).get("metrics", [])
    }
    if benchmark.metric_name in run_metrics:
        state.measurement = measurement_tags(
            float(run_metrics[benchmark.metric_name]), benchmark.value, benchmark.lower_is_better
        )


def ensure_registered_model(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    state.created_registered_model = api.ensure_registered_model(t, plan.model_name)


def find_or_create_version(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    assert state.source is not None
    found = find_version(t, state)
    if found is None:
        tags = {**plan.tags, **state.version_tags}
        found = api.create_version(t, plan.model_name, state.source, state.run_id, tags)
    state.version = str(found["version"])


def wait_until_ready(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    assert state.version is not None
    name = plan.model_name
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        status = api.get_version(t, name, state.version)["status"]
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise ValidationError(f"MLflow could not register {name}/{state.version}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}/{state.version} not READY after {READY_TIMEOUT}s")
        time.sleep(0.2)


def set_alias(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    if plan.alias is not None and state.version is not None:
        api.set_alias(t, plan.model_name, plan.alias, state.version)


def finish(t: Transport, plan: RegistrationPlan, state: SagaState) -> None:
    """Marks the run complete; a stored model's run is not this registration's to mark."""
    if state.run_id is not None and plan.uploads:
        api.set_run_tags(t, state.run_id, {TAG_STATUS: STATUS_COMPLETE})
        api.set_run_status(t, state.run_id, "FINISHED")
