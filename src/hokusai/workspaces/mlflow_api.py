"""MLflow's own workspaces, through its REST API (``/api/3.0/mlflow/workspaces``).

MLflow isolates a workspace's experiments, runs, models and artifacts itself; the
platform's workspace service creates and deletes MLflow's workspace alongside its own
row. This client only speaks to MLflow and turns its answers into domain errors: what
to do about them (adopting a workspace that already exists, refusing a delete) is the
service's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from hokusai.errors import Conflict, InternalError, InvalidInput, Unavailable

PATH = "/api/3.0/mlflow/workspaces"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)

# MLflow's error codes for the answers the service tells apart.
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
# A RESTRICT delete of a workspace that still holds experiments or models.
NOT_EMPTY = "INVALID_STATE"


class MlflowWorkspaceError(Exception):
    """An MLflow error answer (``error_code``, ``message``) the caller may handle."""

    def __init__(self, error_code: str, message: str, status: int) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.status = status


class MlflowWorkspaces:
    """The workspace endpoints of the MLflow server at ``url``."""

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._transport = transport

    def create(self, name: str, description: str = "") -> bool:
        """Create workspace ``name``; True if it was created, False if it already existed
        (adopted as it is)."""
        try:
            self._call("POST", PATH, body={"name": name, "description": description})
        except MlflowWorkspaceError as error:
            if error.error_code == ALREADY_EXISTS:
                return False
            raise self._domain(error, f"create workspace {name!r}") from None
        return True

    def delete(self, name: str) -> bool:
        """Delete workspace ``name`` only if it holds nothing (MLflow's ``RESTRICT``);
        False if MLflow has no such workspace. A workspace that still holds models or
        experiments is a :class:`Conflict` saying so."""
        try:
            self._call("DELETE", f"{PATH}/{quote(name, safe='')}", params={"mode": "RESTRICT"})
        except MlflowWorkspaceError as error:
            if error.error_code == DOES_NOT_EXIST:
                return False
            if error.error_code == NOT_EMPTY:
                raise Conflict(
                    f"workspace {name!r} still holds MLflow resources, so nothing was "
                    f"deleted: {error.message} Delete its registered models and "
                    "experiments first (MLflow keeps a deleted experiment until it is "
                    "garbage-collected: `mlflow gc`)."
                ) from None
            raise self._domain(error, f"delete workspace {name!r}") from None
        return True

    def exists(self, name: str) -> bool:
        try:
            self._call("GET", f"{PATH}/{quote(name, safe='')}")
        except MlflowWorkspaceError as error:
            if error.error_code == DOES_NOT_EXIST:
                return False
            raise self._domain(error, f"read workspace {name!r}") from None
        return True

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        try:
            with httpx.Client(
                base_url=self.url, timeout=TIMEOUT, transport=self._transport
            ) as client:
                answer = client.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"MLflow at {self.url} did not answer ({type(exc).__name__}); nothing was "
                "changed, try again once it runs"
            ) from None
        if answer.is_success:
            return
        try:
            data = answer.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        raise MlflowWorkspaceError(
            str(data.get("error_code") or f"HTTP_{answer.status_code}"),
            str(data.get("message") or answer.reason_phrase),
            answer.status_code,
        )

    def _domain(self, error: MlflowWorkspaceError, what: str) -> Exception:
        if error.error_code == "INVALID_PARAMETER_VALUE":
            return InvalidInput(f"MLflow refused to {what}: {error.message}")
        if error.error_code == "FEATURE_DISABLED" or error.status == 404:
            return Unavailable(
                f"MLflow at {self.url} could not {what}: it does not serve workspaces "
                f"({error.message}); start it with --enable-workspaces"
            )
        return InternalError(f"MLflow at {self.url} could not {what}: {error.message}")
