"""What failed or abandoned registrations left behind, and removing it
(``ModelRegistry.cleanup_failed``, ``hokusai gc``)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hokusai.sdk import mlflow_api as api
from hokusai.sdk.artifacts import artifact_root_path
from hokusai.sdk.errors import NotFoundError
from hokusai.sdk.registration import DEFAULT_EXPERIMENT
from hokusai.sdk.results import RemovedRun
from hokusai.sdk.saga import STATUS_FAILED, STATUS_IN_PROGRESS, TAG_REGISTRATION_ID, TAG_STATUS
from hokusai.sdk.transport import Transport


def remove_leftovers(
    t: Transport, older_than: timedelta, *, dry_run: bool, experiment_name: str | None
) -> list[RemovedRun]:
    """Delete the runs (and their files) that a registration tagged ``failed``, or left
    ``in_progress`` for longer than ``older_than``, and that no model version uses;
    what was (or, with ``dry_run``, would be) removed."""
    try:
        experiment_id = api.get_experiment_id(t, experiment_name or DEFAULT_EXPERIMENT)
    except NotFoundError:
        return []
    cutoff_ms = api.now_ms() - int(older_than.total_seconds() * 1000)
    removed: list[RemovedRun] = []
    for status in (STATUS_FAILED, STATUS_IN_PROGRESS):
        runs = api.search_runs(
            t,
            [experiment_id],
            f"tags.`{TAG_STATUS}` = '{status}' and attributes.start_time < {cutoff_ms}",
        )
        for run in runs:
            info = run["info"]
            if api.search_versions(t, f"run_id = {api.quote_filter(info['run_id'])}"):
                continue  # a version uses it: not a leftover
            entry: RemovedRun = {
                "run_id": info["run_id"],
                "status": status,
                "start_time_ms": int(info.get("start_time", 0)),
                "registration_id": api.tag_dict(run.get("data", {}).get("tags")).get(
                    TAG_REGISTRATION_ID
                ),
            }
            if not dry_run:
                root = artifact_root_path(info["artifact_uri"])
                with contextlib.suppress(NotFoundError):
                    t.request("DELETE", "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/" + root)
                api.delete_run(t, info["run_id"])
            removed.append(entry)
    return removed
