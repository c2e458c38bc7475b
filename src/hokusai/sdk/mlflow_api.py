"""The MLflow REST calls the SDK makes, as small typed functions over a Transport.

Each "get or create" tolerates a concurrent creator (RESOURCE_ALREADY_EXISTS), which is
what makes the registration steps safe to run again.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from hokusai.sdk.errors import APIError, ConflictError, NotFoundError
from hokusai.sdk.transport import Transport


def quote_filter(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def now_ms() -> int:
    return int(time.time() * 1000)


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in tags.items()]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in tags or []}


def get_experiment_id(t: Transport, name: str) -> str:
    found = t.mlflow("GET", "experiments/get-by-name", params={"experiment_name": name})
    return str(found["experiment"]["experiment_id"])


def get_or_create_experiment(t: Transport, name: str) -> tuple[str, bool]:
    """The experiment's id, and whether this call created it."""
    try:
        found = t.mlflow("GET", "experiments/get-by-name", params={"experiment_name": name})
        return str(found["experiment"]["experiment_id"]), False
    except NotFoundError:
        pass
    try:
        created = t.mlflow("POST", "experiments/create", json={"name": name}, idempotent=False)
        return str(created["experiment_id"]), True
    except ConflictError:  # created meanwhile by someone else
        found = t.mlflow("GET", "experiments/get-by-name", params={"experiment_name": name})
        return str(found["experiment"]["experiment_id"]), False


def search_runs(
    t: Transport,
    experiment_ids: list[str],
    filter_string: str,
    *,
    view: str = "ACTIVE_ONLY",
    max_results: int = 1000,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    token = None
    while True:
        body: dict[str, Any] = {
            "experiment_ids": experiment_ids,
            "filter": filter_string,
            "run_view_type": view,
            "max_results": max_results,
        }
        if token:
            body["page_token"] = token
        answer = t.mlflow("POST", "runs/search", json=body, idempotent=True)
        runs += answer.get("runs", [])
        token = answer.get("next_page_token")
        if not token:
            return runs


def create_run(
    t: Transport, experiment_id: str, run_name: str, tags: dict[str, str]
) -> dict[str, Any]:
    answer = t.mlflow(
        "POST",
        "runs/create",
        json={
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": now_ms(),
            "tags": tag_list(tags),
        },
        idempotent=False,
    )
    return dict(answer["run"])


def get_run(t: Transport, run_id: str) -> dict[str, Any]:
    return dict(t.mlflow("GET", "runs/get", params={"run_id": run_id})["run"])


def get_logged_model(t: Transport, model_id: str) -> dict[str, Any]:
    """A logged model (MLflow 3's ``models:/m-…``): its ``info`` and ``data``."""
    return dict(t.mlflow("GET", f"logged-models/{quote(model_id, safe='')}")["model"])


def set_run_status(t: Transport, run_id: str, status: str) -> None:
    body: dict[str, Any] = {"run_id": run_id, "status": status}
    if status != "RUNNING":
        body["end_time"] = now_ms()
    t.mlflow("POST", "runs/update", json=body, idempotent=True)


def set_run_tags(t: Transport, run_id: str, tags: dict[str, str]) -> None:
    # log-batch with the same tags twice leaves the same state: safe to retry.
    t.mlflow(
        "POST", "runs/log-batch", json={"run_id": run_id, "tags": tag_list(tags)}, idempotent=True
    )


def log_metrics_and_params(
    t: Transport, run_id: str, metrics: dict[str, float], params: dict[str, str]
) -> None:
    timestamp = now_ms()
    t.mlflow(
        "POST",
        "runs/log-batch",
        json={
            "run_id": run_id,
            "metrics": [
                {"key": k, "value": float(v), "timestamp": timestamp, "step": 0}
                for k, v in metrics.items()
            ],
            "params": [{"key": k, "value": str(v)} for k, v in params.items()],
        },
        idempotent=False,
    )


def delete_run(t: Transport, run_id: str) -> None:
    t.mlflow("POST", "runs/delete", json={"run_id": run_id}, idempotent=True)


def ensure_registered_model(t: Transport, name: str, tags: dict[str, str] | None = None) -> bool:
    """Create the registered model unless it exists; whether this call created it."""
    try:
        t.mlflow(
            "POST",
            "registered-models/create",
            json={"name": name, "tags": tag_list(tags or {})},
            idempotent=False,
        )
    except ConflictError:
        return False
    return True


def search_versions(
    t: Transport, filter_string: str, *, max_results: int = 200
) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"filter": filter_string, "max_results": max_results}
        if token:
            params["page_token"] = token
        answer = t.mlflow("GET", "model-versions/search", params=params)
        versions += answer.get("model_versions", [])
        token = answer.get("next_page_token")
        if not token:
            return versions


def create_version(
    t: Transport,
    name: str,
    source: str,
    run_id: str | None,
    tags: dict[str, str],
    description: str = "",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "source": source,
        "tags": tag_list(tags),
        "description": description,
    }
    if run_id:
        body["run_id"] = run_id
    return dict(
        t.mlflow("POST", "model-versions/create", json=body, idempotent=False)["model_version"]
    )


def get_version(t: Transport, name: str, version: str) -> dict[str, Any]:
    return dict(
        t.mlflow("GET", "model-versions/get", params={"name": name, "version": version})[
            "model_version"
        ]
    )


def set_version_tag(t: Transport, name: str, version: str, key: str, value: str) -> None:
    # Setting a tag to the same value twice leaves the same state: safe to retry.
    t.mlflow(
        "POST",
        "model-versions/set-tag",
        json={"name": name, "version": version, "key": key, "value": value},
        idempotent=True,
    )


def get_version_by_alias(t: Transport, name: str, alias: str) -> dict[str, Any]:
    try:
        answer = t.mlflow("GET", "registered-models/alias", params={"name": name, "alias": alias})
    except APIError as exc:
        # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE; it is a 404.
        if exc.status_code == 400 and "not found" in exc.message.lower():
            raise NotFoundError(
                f"model {name!r} has no alias {alias!r}",
                status_code=404,
                error_code="RESOURCE_DOES_NOT_EXIST",
                request_id=exc.request_id,
                body=exc.body,
            ) from None
        raise
    return dict(answer["model_version"])


def set_alias(t: Transport, name: str, alias: str, version: str) -> None:
    # Setting an alias to the same version twice leaves the same state: safe to retry.
    t.mlflow(
        "POST",
        "registered-models/alias",
        json={"name": name, "alias": alias, "version": version},
        idempotent=True,
    )


def delete_alias(t: Transport, name: str, alias: str) -> None:
    t.mlflow("DELETE", "registered-models/alias", json={"name": name, "alias": alias})


def get_registered_model(t: Transport, name: str) -> dict[str, Any]:
    return dict(t.mlflow("GET", "registered-models/get", params={"name": name})["registered_model"])
