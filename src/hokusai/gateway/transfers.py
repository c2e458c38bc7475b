"""Which MLflow requests are artifact transfers and which are API calls.

Artifact transfers (the ``mlflow-artifacts`` service, and the downloads MLflow serves
outside it) may be large and slow: their bodies stream, with the long upstream read
timeout. Everything else is an API call: a small body read whole before an upstream
connection is taken, and a short read timeout, so a hung MLflow fails fast.
"""

from __future__ import annotations

import re

_TRANSFER = re.compile(
    r"/(?:ajax-)?api/2\.0/mlflow-artifacts/"
    r"|/(?:model-versions/)?get-artifact\Z"
    r"|/ajax-api/[23]\.0/mlflow/get-trace-artifact\Z"
    r"|/ajax-api/2\.0/mlflow/logged-models/[^/]+/artifacts/files\Z"
)
# The artifact uploads whose size is bounded by max_artifact_bytes, not max_body_bytes.
_UPLOAD = re.compile(r"/(?:ajax-)?api/2\.0/mlflow-artifacts/(?:artifacts|mpu)/")


def is_artifact_transfer(mlflow_path: str) -> bool:
    return _TRANSFER.match(mlflow_path) is not None


def is_artifact_upload(mlflow_path: str) -> bool:
    return _UPLOAD.match(mlflow_path) is not None
