"""Registry events: their types, and how a successful MLflow write becomes events.

Pure functions, no I/O: the gateway hands over the request, MLflow's answer and the
workspace the request acted in, and gets back the events to put in the outbox. Every
event belongs to one workspace: only that workspace's endpoints receive it, and its
payload's ``data`` names it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from hokusai.integrity import TAG_MANIFEST_DIGEST, TAG_SIGNER
from hokusai.tokens import (
    TAG_BENCHMARK_METRIC,
    TAG_BENCHMARK_VALUE,
    TAG_LOWER_IS_BETTER,
    TAG_MEASURED_VALUE,
    TAG_TOKEN_ID,
    meets_benchmark,
)
from hokusai.workspaces.records import DEFAULT_WORKSPACE

REGISTERED_MODEL_CREATED = "registered_model.created"
REGISTERED_MODEL_DELETED = "registered_model.deleted"
MODEL_VERSION_CREATED = "model_version.created"
MODEL_VERSION_DELETED = "model_version.deleted"
MODEL_VERSION_ALIAS_SET = "model_version.alias_set"
MODEL_VERSION_ALIAS_DELETED = "model_version.alias_deleted"
MODEL_VERSION_TAG_SET = "model_version.tag_set"
MODEL_VERSION_STAGE_TRANSITIONED = "model_version.stage_transitioned"
MODEL_REGISTERED = "model.registered"
TOKEN_READY_FOR_DEPLOY = "token.ready_for_deploy"
WEBHOOK_TEST = "webhook.test"

EVENT_TYPES = (
    REGISTERED_MODEL_CREATED,
    REGISTERED_MODEL_DELETED,
    MODEL_VERSION_CREATED,
    MODEL_VERSION_DELETED,
    MODEL_VERSION_ALIAS_SET,
    MODEL_VERSION_ALIAS_DELETED,
    MODEL_VERSION_TAG_SET,
    MODEL_VERSION_STAGE_TRANSITIONED,
    MODEL_REGISTERED,
    TOKEN_READY_FOR_DEPLOY,
)

# The registry writes that produce events, by (method, MLflow path without version prefix).
_WRITE = re.compile(
    r"/(?:ajax-)?api/2\.0/mlflow/(?P<endpoint>registered-models/\S+|model-versions/\S+)"
)
CAPTURED = {
    ("POST", "registered-models/create"),
    ("DELETE", "registered-models/delete"),
    ("POST", "model-versions/create"),
    ("DELETE", "model-versions/delete"),
    ("POST", "registered-models/alias"),
    ("DELETE", "registered-models/alias"),
    ("POST", "model-versions/set-tag"),
    ("POST", "model-versions/transition-stage"),
}


@dataclass
class Event:
    type: str
    data: dict[str, Any]
    key_id: str | None = None
    source: str = "gateway"
    dedupe_key: str | None = None
    id: str = field(default_factory=lambda: "evt_" + uuid.uuid4().hex)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The workspace whose registry changed (a test event: its endpoint's workspace).
    workspace: str = field(default=DEFAULT_WORKSPACE, kw_only=True)

    @property
    def model_name(self) -> str | None:
        return self.data.get("name")

    @property
    def model_version(self) -> str | None:
        version = self.data.get("version")
        return str(version) if version is not None else None

    def body(self) -> str:
        """The JSON a receiver gets (the Standard Webhooks payload shape); ``data`` names
        the workspace, so a receiver serving several teams can tell them apart."""
        return json.dumps(
            {
                "id": self.id,
                "type": self.type,
                "timestamp": self.occurred_at.isoformat(),
                "key_id": self.key_id,
                "data": {**self.data, "workspace": self.workspace},
            },
            sort_keys=True,
        )


def captured_endpoint(method: str, mlflow_path: str) -> str | None:
    """The registry endpoint of a write that produces events, else None."""
    match = _WRITE.fullmatch(mlflow_path)
    if match and (method, match["endpoint"]) in CAPTURED:
        return match["endpoint"]
    return None


def request_fields(body: bytes, query_string: bytes) -> dict[str, Any]:
    """The fields of a request: its JSON body, else its query string (MLflow takes both)."""
    if body:
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return parsed
        except ValueError:
            pass
    return dict(parse_qsl(query_string.decode("latin-1")))


def tag_map(version: Mapping[str, Any]) -> dict[str, Any]:
    """A version's tags by key, from MLflow's list of ``{key, value}`` (or a dict)."""
    tags = version.get("tags") or []
    return dict(tags) if isinstance(tags, dict) else {t["key"]: t.get("value") for t in tags}


def integrity_data(version: Mapping[str, Any]) -> dict[str, Any]:
    """What a version's files are and who vouches for them: its manifest's digest and
    the key that signed it (None when it records none)."""
    tags = tag_map(version)
    return {"manifest_digest": tags.get(TAG_MANIFEST_DIGEST), "signer": tags.get(TAG_SIGNER)}


def version_data(version: dict[str, Any]) -> dict[str, Any]:
    """What a receiver needs of a model version."""
    tags = tag_map(version)
    data = {
        "name": version.get("name"),
        "version": str(version.get("version")),
        "run_id": version.get("run_id") or None,
        "source": version.get("source"),
        "tags": tags,
        "token_id": tags.get(TAG_TOKEN_ID),
        **integrity_data(version),
    }
    if TAG_BENCHMARK_METRIC in tags:
        data["metric"] = {
            "name": tags.get(TAG_BENCHMARK_METRIC),
            "benchmark_value": _float(tags.get(TAG_BENCHMARK_VALUE)),
            "measured_value": _float(tags.get(TAG_MEASURED_VALUE)),
            "lower_is_better": tags.get(TAG_LOWER_IS_BETTER) == "true",
        }
    return data


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_ready_for_deploy(data: dict[str, Any]) -> bool:
    """A token model whose measured metric meets its benchmark."""
    metric = data.get("metric")
    if not data.get("token_id") or not metric:
        return False
    measured, benchmark = metric.get("measured_value"), metric.get("benchmark_value")
    if measured is None or benchmark is None:
        return False
    return meets_benchmark(measured, benchmark, lower_is_better=bool(metric.get("lower_is_better")))


def scoped_key(workspace: str, key: str) -> str:
    """A dedupe key within a workspace: two teams may both have version 1 of ``LSCOR``.

    ``default``'s keys keep the form they had before workspaces existed, so that the
    events of a store that migrated into ``default`` are still recognised (the
    reconciler emits nothing twice). Workspace names have no ``:``, so no scoped key
    equals another workspace's."""
    return key if workspace == DEFAULT_WORKSPACE else f"{workspace}:{key}"


def instance_key(
    event_type: str, name: Any, version: Any, created_ms: Any, *, workspace: str
) -> str:
    """Dedupe key of a change to one version *instance*: a name and number can come back
    after a deletion, its creation time cannot."""
    return scoped_key(workspace, f"{event_type}:{name}:{version}:{created_ms}")


def token_events(
    version: dict[str, Any], key_id: str | None, source: str, *, workspace: str
) -> list[Event]:
    """``model.registered`` and ``token.ready_for_deploy`` for a version, once each."""
    data = version_data(version)
    created_ms = version.get("creation_timestamp")
    found: list[Event] = []
    for event_type, wanted in (
        (MODEL_REGISTERED, bool(data.get("token_id"))),
        (TOKEN_READY_FOR_DEPLOY, is_ready_for_deploy(data)),
    ):
        if wanted:
            key = instance_key(
                event_type, data["name"], data["version"], created_ms, workspace=workspace
            )
            found.append(
                Event(event_type, data, key_id, source, dedupe_key=key, workspace=workspace)
            )
    return found


def version_created_events(
    version: dict[str, Any], key_id: str | None, source: str, *, workspace: str
) -> list[Event]:
    data = version_data(version)
    created = Event(
        MODEL_VERSION_CREATED,
        data,
        key_id,
        source,
        dedupe_key=instance_key(
            MODEL_VERSION_CREATED,
            data["name"],
            data["version"],
            version.get("creation_timestamp"),
            workspace=workspace,
        ),
        workspace=workspace,
    )
    return [created, *token_events(version, key_id, source, workspace=workspace)]


def model_created_event(
    model: dict[str, Any], key_id: str | None, source: str, *, workspace: str
) -> Event:
    name = model.get("name")
    key = f"{REGISTERED_MODEL_CREATED}:{name}:{model.get('creation_timestamp')}"
    return Event(
        REGISTERED_MODEL_CREATED,
        {"name": name, "tags": tag_map(model)},
        key_id,
        source,
        dedupe_key=scoped_key(workspace, key),
        workspace=workspace,
    )


def events_for_write(
    endpoint: str,
    method: str,
    request: dict[str, Any],
    response: dict[str, Any],
    key_id: str | None,
    current_version: dict[str, Any] | None = None,
    *,
    workspace: str,
    owner: str | None = None,
) -> list[Event]:
    """The events of a registry write MLflow answered with 2xx, in ``workspace`` (the
    one the request acted in).

    ``current_version``: the version as it is after a tag change (fetched by the caller
    when the tag matters for the token events), or the version an alias is set to (its
    event carries the version's manifest digest and signer). ``owner``: the owner of the
    key that made the write; an alias event names it as ``by`` (with ``key_id``), so a
    receiver sees who promoted.
    """
    key = (method, endpoint)

    def event(event_type: str, data: dict[str, Any]) -> Event:
        return Event(event_type, data, key_id, workspace=workspace)

    if key == ("POST", "registered-models/create"):
        model = response.get("registered_model", {})
        return [model_created_event(model, key_id, "gateway", workspace=workspace)]
    if key == ("DELETE", "registered-models/delete"):
        return [event(REGISTERED_MODEL_DELETED, {"name": request.get("name")})]
    if key == ("POST", "model-versions/create"):
        version = response.get("model_version", {})
        return version_created_events(version, key_id, "gateway", workspace=workspace)
    if key == ("DELETE", "model-versions/delete"):
        name, number = request.get("name"), str(request.get("version"))
        return [event(MODEL_VERSION_DELETED, {"name": name, "version": number})]
    if key == ("POST", "registered-models/alias"):
        return [
            event(
                MODEL_VERSION_ALIAS_SET,
                {
                    "name": request.get("name"),
                    "alias": request.get("alias"),
                    "version": str(request.get("version")),
                    "by": {"key_id": key_id, "owner": owner},
                    **integrity_data(current_version or {}),
                },
            )
        ]
    if key == ("DELETE", "registered-models/alias"):
        return [
            event(
                MODEL_VERSION_ALIAS_DELETED,
                {
                    "name": request.get("name"),
                    "alias": request.get("alias"),
                    "by": {"key_id": key_id, "owner": owner},
                },
            )
        ]
    if key == ("POST", "model-versions/set-tag"):
        found = [
            event(
                MODEL_VERSION_TAG_SET,
                {
                    "name": request.get("name"),
                    "version": str(request.get("version")),
                    "key": request.get("key"),
                    "value": request.get("value"),
                },
            )
        ]
        if current_version is not None:
            found += token_events(current_version, key_id, "gateway", workspace=workspace)
        return found
    if key == ("POST", "model-versions/transition-stage"):
        version = response.get("model_version", {})
        return [
            event(
                MODEL_VERSION_STAGE_TRANSITIONED,
                {
                    "name": request.get("name"),
                    "version": str(request.get("version")),
                    "stage": version.get("current_stage") or request.get("stage"),
                },
            )
        ]
    return []
