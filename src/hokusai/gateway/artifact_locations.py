"""Where clients may ask MLflow to put an experiment's artifacts.

MLflow writes an experiment's artifacts wherever its ``artifact_location`` says, on the
server's own file system included: a write key that could name ``/any/dir`` could make
MLflow write files anywhere. CreateExperiment is the one request in MLflow's protocol
that lets a client choose such a location; it may name a place under the platform's
artifact root (or leave it out, the normal case), nothing else. Admin keys may be
allowed more by a setting.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError

CREATE_EXPERIMENT = frozenset(
    {"/api/2.0/mlflow/experiments/create", "/ajax-api/2.0/mlflow/experiments/create"}
)


def chooses_artifact_location(method: str, mlflow_path: str) -> bool:
    return method == "POST" and mlflow_path in CREATE_EXPERIMENT


def check_artifact_location(body: bytes, artifact_root: str) -> None:
    """Refuse a CreateExperiment body whose artifact_location is outside ``artifact_root``."""
    try:
        pairs = json.loads(body, object_pairs_hook=lambda items: items)
    except (ValueError, UnicodeDecodeError):
        return  # not JSON: MLflow refuses it itself, and it names no location
    if not isinstance(pairs, list):
        return
    locations = [value for name, value in pairs if name == "artifact_location"]
    if len(locations) > 1:
        raise _refused("artifact_location is given more than once", artifact_root)
    if not locations or locations[0] in (None, ""):
        return
    location = locations[0]
    if not isinstance(location, str) or not _under(location, artifact_root):
        raise _refused(f"artifact_location {_shown(location)} is not allowed", artifact_root)


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
        f"{what}: experiments keep their artifacts under the platform's artifact root "
        f"({root}). Leave artifact_location out, or name a place under the root. Nothing "
        "was created.",
        reason="artifact_location",
    )
