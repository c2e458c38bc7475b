"""Where a model version's files lie in this registry's artifact store.

A version's ``source`` says it for a version made from files (``mlflow-artifacts:/…``,
as the SDK and MLflow 2 clients register). A version made from a logged model (source
``models:/m-…``, as MLflow 3 clients register) names only the model, and MLflow's
answers about the version leave ``storage_location`` out: the logged model's own
``artifact_uri`` says where its files are.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from hokusai.gateway.mlflow_probe import MlflowProbe

# A logged model's id as MLflow makes it (``m-`` and hex); anything else is not looked up.
_LOGGED_MODEL = re.compile(r"models:/(?P<id>m-[0-9a-f]{32})/?")


def proxied_location(uri: Any) -> str | None:
    """The path of an ``mlflow-artifacts:`` URI (this registry's proxied store); None
    for any other kind of location."""
    if not isinstance(uri, str):
        return None
    parts = urlsplit(uri)
    if parts.scheme != "mlflow-artifacts":
        return None
    return parts.path.strip("/") or None


def logged_model_id(source: Any) -> str | None:
    """The logged model a ``models:/m-…`` source names; None for any other source."""
    if not isinstance(source, str):
        return None
    match = _LOGGED_MODEL.fullmatch(source)
    return match["id"] if match else None


async def files_location(probe: MlflowProbe, workspace: str, version: dict[str, Any]) -> str | None:
    """The path (as in an ``mlflow-artifacts:`` URI) of the version's files; None when
    they are not in this registry's store."""
    direct = proxied_location(version.get("storage_location")) or proxied_location(
        version.get("source")
    )
    if direct is not None:
        return direct
    model_id = logged_model_id(version.get("source"))
    if model_id is None:
        return None
    answer = await probe.get(
        workspace, f"/logged-models/{model_id}", about="where a logged model's files lie"
    )
    info = ((answer or {}).get("model") or {}).get("info") or {}
    return proxied_location(info.get("artifact_uri"))
