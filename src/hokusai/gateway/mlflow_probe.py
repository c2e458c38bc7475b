"""The gateway's own questions to MLflow, asked in a caller's workspace.

Checks that need a fact only MLflow has (does this run exist in the workspace? which
versions were registered from it?) ask here, with the caller's workspace header, so
MLflow's own isolation answers them. A question MLflow cannot answer refuses the request
as unavailable: a check that could not be made must not let the request through.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError
from hokusai.workspaces.records import WORKSPACE_HEADER

V2 = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
# The most of an artifact file a check reads (a manifest or its signature, never a model).
MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
# The most of any other answer a check reads (a page of a search is far less).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# How long a question to MLflow may take before the request is refused as unavailable.
PROBE_TIMEOUT = 10.0


class MlflowProbe:
    """Asks ``upstream_url`` through ``client`` (the gateway's pool for its own calls)."""

    def __init__(self, client: httpx.AsyncClient, upstream_url: str) -> None:
        self._client = client
        self._upstream = upstream_url.rstrip("/")

    async def get(
        self, workspace: str, path: str, params: dict[str, str] | None = None, *, about: str
    ) -> dict[str, Any] | None:
        """MLflow's answer to ``GET {V2}{path}`` in ``workspace``; None when MLflow says
        it does not exist. ``about`` completes "MLflow could not be asked …" in the error
        of a question that got no answer."""
        status, body = await self._ask(workspace, f"{V2}{path}", params, about)
        if status == 200:
            document = _json(body)
            if isinstance(document, dict):
                return document
        if status in (400, 404):
            # MLflow's answer to a run, model or version that is not in this workspace
            # (some handlers answer an unknown id with INVALID_PARAMETER_VALUE).
            return None
        raise _unavailable(f"MLflow answered {status} when asked {about}")

    async def artifact(self, workspace: str, path: str, *, about: str) -> bytes | None:
        """The small artifact file at MLflow's artifact path ``path``, asked in
        ``workspace``; None when MLflow has no such file. A larger file than a check
        reads (``MAX_ARTIFACT_BYTES``) is refused before more of it is read."""
        status, body = await self._ask(
            workspace, f"{ARTIFACTS}{quote(path)}", None, about, most=MAX_ARTIFACT_BYTES
        )
        if status == 200:
            return body
        if status in (400, 404):
            return None
        raise _unavailable(f"MLflow answered {status} when asked {about}")

    async def has_artifact(self, workspace: str, path: str, *, about: str) -> bool:
        """Whether MLflow holds an artifact file at ``path`` (its content is not read)."""
        status, _ = await self._ask(workspace, f"{ARTIFACTS}{quote(path)}", None, about, most=None)
        if status == 200:
            return True
        if status in (400, 404):
            return False
        raise _unavailable(f"MLflow answered {status} when asked {about}")

    async def listing(self, workspace: str, path: str, *, about: str) -> list[dict[str, Any]]:
        """What MLflow's artifact store holds directly under ``path`` (``[{path, is_dir,
        file_size}]``, each ``path`` a base name), asked in ``workspace``."""
        status, body = await self._ask(workspace, ARTIFACTS.rstrip("/"), {"path": path}, about)
        if status != 200:
            raise _unavailable(f"MLflow answered {status} when asked {about}")
        document = _json(body)
        files = document.get("files", []) if isinstance(document, dict) else None
        if not isinstance(files, list):
            raise _unavailable(f"MLflow's answer was not a listing when asked {about}")
        return [entry for entry in files if isinstance(entry, dict)]

    async def _ask(
        self,
        workspace: str,
        path: str,
        params: dict[str, str] | None,
        about: str,
        *,
        most: int | None = MAX_ANSWER_BYTES,
    ) -> tuple[int, bytes]:
        """The status and body of MLflow's answer; the body read as it comes, and the
        answer refused once it is longer than ``most`` bytes (a file a client put where a
        check reads must not make the gateway hold it in memory); ``most`` None: the
        status alone, the body left unread."""
        try:
            async with self._client.stream(
                "GET",
                f"{self._upstream}{path}",
                params=params,
                headers={WORKSPACE_HEADER: workspace},
                timeout=PROBE_TIMEOUT,
            ) as answer:
                body = bytearray()
                if most is None:
                    return answer.status_code, b""
                async for piece in answer.aiter_bytes():
                    body += piece
                    if len(body) > most:
                        raise _unavailable(f"MLflow's answer is too large when asked {about}")
                return answer.status_code, bytes(body)
        except httpx.HTTPError as exc:
            raise _unavailable(
                f"MLflow could not be asked {about} ({type(exc).__name__})"
            ) from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _unavailable(what: str) -> GatewayError:
    return GatewayError(
        ErrorCode.TEMPORARILY_UNAVAILABLE,
        f"{what}; nothing was changed, try again.",
        headers={"Retry-After": "1"},
        reason="mlflow_probe_unavailable",
    )
