"""Where clients may ask MLflow to put files.

MLflow writes wherever a location it was given says, on the server's own file system
included: a key that could name ``/any/dir`` could make MLflow write files anywhere. Three
requests of MLflow's protocol let a client choose such a place:

- CreateExperiment's ``artifact_location`` (any write key);
- CreateWorkspace and UpdateWorkspace's ``default_artifact_root`` and
  ``trace_archival_config.location`` (admin keys only, by the route policy).

Each may name a place under the platform's artifact root (or leave it out, the normal
case), nothing else. Admin keys may be allowed more by a setting
(``HOKUSAI_ADMIN_ARTIFACT_LOCATIONS``). The table below is the one list of such fields.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError

# A JSON field of a request body, as the keys from the top object down to it.
FieldPath = tuple[str, ...]


@dataclass(frozen=True)
class ChosenLocations:
    """A request (method, MLflow path) whose body may name where MLflow writes."""

    method: str
    path: re.Pattern[str]
    fields: tuple[FieldPath, ...]


_WORKSPACE_FIELDS: tuple[FieldPath, ...] = (
    ("default_artifact_root",),
    ("trace_archival_config", "location"),
)
# The UI's ``/ajax-api`` twin of each path reaches the same handler.
REQUESTS_THAT_CHOOSE_LOCATIONS = (
    ChosenLocations(
        "POST",
        re.compile(r"/(?:api|ajax-api)/2\.0/mlflow/experiments/create"),
        (("artifact_location",),),
    ),
    ChosenLocations(
        "POST", re.compile(r"/(?:api|ajax-api)/3\.0/mlflow/workspaces"), _WORKSPACE_FIELDS
    ),
    ChosenLocations(
        "PATCH", re.compile(r"/(?:api|ajax-api)/3\.0/mlflow/workspaces/[^/]+"), _WORKSPACE_FIELDS
    ),
)


def location_fields(method: str, mlflow_path: str) -> tuple[FieldPath, ...]:
    """The body fields of this request that name a place MLflow writes to (none: empty)."""
    for request in REQUESTS_THAT_CHOOSE_LOCATIONS:
        if method == request.method and request.path.fullmatch(mlflow_path):
            return request.fields
    return ()


def check_locations(body: bytes, fields: tuple[FieldPath, ...], artifact_root: str) -> None:
    """Refuse a body in which any of ``fields`` names a place outside ``artifact_root``."""
    try:
        # Pairs, not a dict: a field given twice must not hide behind the one MLflow keeps.
        pairs = json.loads(body, object_pairs_hook=lambda items: items)
    except (ValueError, UnicodeDecodeError):
        return  # not JSON: MLflow refuses it itself, and it names no location
    for field in fields:
        location = _value_at(pairs, field, artifact_root)
        if location in (None, ""):
            continue
        if not isinstance(location, str) or not _under(location, artifact_root):
            raise _refused(f"{'.'.join(field)} {_shown(location)} is not allowed", artifact_root)


def _value_at(pairs: Any, field: FieldPath, artifact_root: str) -> Any:
    """The value at ``field`` in a body parsed into pairs; None when it is absent."""
    node = pairs
    for depth, name in enumerate(field):
        if not isinstance(node, list):  # not an object: nothing is named at this depth
            return None
        found = [value for key, value in node if key == name]
        if len(found) > 1:
            raise _refused(f"{'.'.join(field[: depth + 1])} is given more than once", artifact_root)
        if not found:
            return None
        node = found[0]
    return node


def _under(location: str, root: str) -> bool:
    base = root.rstrip("/") + "/"
    if location.rstrip("/") + "/" == base:
        return True
    if not location.startswith(base):
        return False
    rest = location[len(base) :]
    decoded = rest
    for _ in range(3):  # encoded once, twice, …: every form must be clean
        decoded = unquote(decoded)
    if decoded.startswith("/") or any(c in decoded for c in "\\?#\x00"):
        return False
    return all(segment not in (".", "..") for segment in decoded.split("/"))


def _shown(value: Any) -> str:
    return json.dumps(value)[:200]


def _refused(what: str, root: str) -> GatewayError:
    return GatewayError(
        ErrorCode.INVALID_PARAMETER_VALUE,
        f"{what}: MLflow keeps artifacts under the platform's artifact root ({root}). "
        "Leave the location out, or name a place under the root. Nothing was created or "
        "changed.",
        reason="artifact_location",
    )
