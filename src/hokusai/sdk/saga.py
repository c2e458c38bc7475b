"""Registration as a saga: named steps, each of which first looks for its own earlier
result, so that running the whole registration again with the same registration id
resumes where it stopped and never makes a second run or a second model version.

A failing step marks the run FAILED and tags it (``hokusai.registration_status`` =
``failed``, with the step and error), then raises :class:`RegistrationError` naming the
step and what was left behind — once: the error is the report, nothing is logged above
debug level. "Left behind" is what this registration made and is still there: its run and
model version, and the experiment or registered model only when this call created them.
A crash leaves the run RUNNING with status ``in_progress``; ``cleanup_failed`` treats
both as leftovers once old enough.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hokusai.integrity import TAG_MANIFEST_DIGEST, TAG_SIGNER
from hokusai.sdk import mlflow_api as api
from hokusai.sdk.errors import registration_failure
from hokusai.sdk.transport import Transport

log = logging.getLogger("hokusai.sdk.registration")

TAG_REGISTRATION_ID = "hokusai.registration_id"
TAG_STATUS = "hokusai.registration_status"
TAG_FAILED_STEP = "hokusai.registration_failed_step"
TAG_ERROR = "hokusai.registration_error"
TAG_KIND = "hokusai.registration_kind"
TAG_MODEL_UPLOADED = "hokusai.model_uploaded"

STATUS_IN_PROGRESS = "in_progress"
STATUS_FAILED = "failed"
STATUS_COMPLETE = "complete"


@dataclass
class SagaState:
    """What a registration has made so far."""

    registration_id: str
    model_name: str
    experiment_id: str | None = None
    run_id: str | None = None
    artifact_root: str | None = None
    source: str | None = None
    version: str | None = None
    # What this call created, as opposed to found: only that is its leftover.
    created_experiment: bool = False
    created_registered_model: bool = False
    # Tags a stored model's run adds to the version: its measurement of the benchmark.
    measurement: dict[str, str] = field(default_factory=dict)
    # ``sha256:<hex>`` of the model files' manifest, when it is known.
    manifest_digest: str | None = None
    # ``sha256:<hex>`` of the key that signed the manifest, when it was signed.
    signer: str | None = None

    @property
    def version_tags(self) -> dict[str, str]:
        """The tags this registration's progress adds to the plan's."""
        tags = dict(self.measurement)
        if self.manifest_digest is not None:
            tags[TAG_MANIFEST_DIGEST] = self.manifest_digest
        if self.signer is not None:
            tags[TAG_SIGNER] = self.signer
        return tags

    def left_behind(self) -> dict[str, str]:
        """What this registration made that is still there, by kind."""
        left: dict[str, str] = {}
        if self.created_experiment and self.experiment_id is not None:
            left["experiment_id"] = self.experiment_id
        if self.run_id is not None:
            left["run_id"] = self.run_id
        if self.version is not None:
            left["model_version"] = f"{self.model_name}/{self.version}"
        elif self.created_registered_model:
            left["registered_model"] = self.model_name
        return left


Plan = TypeVar("Plan")
# A step reads what to make from the plan and records what it made in the state; run
# again with the same plan, it finds what it made before instead of making it twice.
Step = tuple[str, Callable[[Transport, Plan, SagaState], None]]
# Called after each step with its name: where faults are injected in tests.
AfterStep = Callable[[str], None]

_after_step: ContextVar[AfterStep | None] = ContextVar("hokusai_after_step", default=None)


@contextlib.contextmanager
def after_each_step(hook: AfterStep | None) -> Iterator[None]:
    """Call ``hook`` with each step's name after it succeeds, for the registrations made
    inside the block (in this thread or task): a fault raised by the hook is a failure of
    that step. Not public API: the seam the saga's fault tests use."""
    token = _after_step.set(hook)
    try:
        yield
    finally:
        _after_step.reset(token)


def run_saga(transport: Transport, plan: Plan, state: SagaState, steps: list[Step[Plan]]) -> None:
    after_step = _after_step.get()
    for name, step in steps:
        try:
            step(transport, plan, state)
            if after_step is not None:
                after_step(name)
        except Exception as exc:
            log.debug("registration %s failed at %s: %s", state.registration_id, name, exc)
            _mark_failed(transport, state, name, exc)
            raise registration_failure(
                name, state.registration_id, exc, state.left_behind()
            ) from exc


def _mark_failed(transport: Transport, state: SagaState, step: str, exc: Exception) -> None:
    """Best effort: when the registry itself is unreachable the run stays in_progress."""
    if state.run_id is None:
        return
    try:
        api.set_run_tags(
            transport,
            state.run_id,
            {
                TAG_STATUS: STATUS_FAILED,
                TAG_FAILED_STEP: step,
                TAG_ERROR: str(exc)[:500],
            },
        )
        api.set_run_status(transport, state.run_id, "FAILED")
    except Exception as mark_error:  # the original failure is what the caller must see
        log.debug("could not mark run %s failed: %s", state.run_id, mark_error)


def find_version(transport: Transport, state: SagaState) -> dict[str, Any] | None:
    """The version this registration made earlier, if any (found by its tag)."""
    versions = api.search_versions(
        transport,
        f"name = {api.quote_filter(state.model_name)} and "
        f"tags.`{TAG_REGISTRATION_ID}` = {api.quote_filter(state.registration_id)}",
    )
    if not versions:
        return None
    # Two would mean a bug or a concurrent duplicate: keep answering with the oldest.
    return min(versions, key=lambda v: int(v["version"]))
