"""HTTP to the gateway: one client, the retry policy applied, answers mapped to errors.

The SDK speaks MLflow's REST API through the gateway itself rather than through the
MLflow client library, so that the key never has to be put in the process environment,
retries follow ``hokusai.sdk.retry`` alone, and every error is typed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from hokusai.sdk import errors
from hokusai.sdk.config import ClientConfig
from hokusai.sdk.retry import RetryBudget
from hokusai.version import __version__

log = logging.getLogger("hokusai.sdk")

MLFLOW_API = "/api/mlflow/api/2.0/mlflow/"
ARTIFACTS_API = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/"


class Transport:
    def __init__(self, config: ClientConfig, *, timeout: float, max_retry_time: float) -> None:
        self.config = config
        self.max_retry_time = max_retry_time
        self._client = httpx.Client(
            base_url=config.api_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "Authorization": f"Bearer {config.api_key}",
                "User-Agent": f"hokusai-sdk/{__version__}",
            },
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    # ---- requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying what the policy allows; raise typed errors.

        ``content`` is bytes or a function returning a fresh iterable of chunks, so that a
        streamed body can be sent again on a retry.

        A request that is not idempotent is retried only when it surely was not applied:
        the connection was never made, or the gateway answered 429/503 itself.
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        budget = RetryBudget(self.max_retry_time)
        request_id = uuid.uuid4().hex
        while True:
            body = content() if callable(content) else content
            try:
                response = self._client.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    content=body,
                    headers={"X-Request-ID": request_id, **(headers or {})},
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                never_sent = isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                delay = (
                    budget.next_delay(status=None, retry_after=None)
                    if idempotent or never_sent
                    else None
                )
                if delay is None:
                    raise self._no_answer(exc, request_id) from exc
                time.sleep(delay)
                continue
            if response.status_code < 400:
                return response
            retry_after = _retry_after(response)
            may_retry = idempotent or response.status_code in (429, 503)
            delay = (
                budget.next_delay(status=response.status_code, retry_after=retry_after)
                if may_retry
                else None
            )
            if delay is None:
                raise error_from_response(response, self.config)
            time.sleep(delay)

    def mlflow(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``/api/2.0/mlflow/<endpoint>`` through the gateway; the JSON answer."""
        response = self.request(method, MLFLOW_API + endpoint, **kwargs)
        return response.json() if response.content else {}

    def _no_answer(self, exc: httpx.TransportError, request_id: str) -> errors.HokusaiError:
        url = self.config.api_url
        if isinstance(exc, httpx.ConnectError):
            reason = f"could not connect to {url} ({exc})"
            fix = (
                "Check HOKUSAI_API_URL and that the gateway is running "
                "(`hokusai doctor` names the failing hop)."
            )
        elif isinstance(exc, httpx.TimeoutException):
            reason = f"{url} did not answer in time ({type(exc).__name__})"
            fix = "The registry may be overloaded; retry later or raise timeout=…."
        else:
            reason = f"the connection to {url} broke ({type(exc).__name__}: {exc})"
            fix = "Retry later; `hokusai doctor` checks each hop."
        return errors.RegistryUnavailableError(
            f"The registry is unavailable: {reason}, after retrying for up to "
            f"{self.max_retry_time:g} s. {fix}",
            request_id=request_id,
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def error_from_response(response: httpx.Response, config: ClientConfig) -> errors.HokusaiError:
    """The typed error for an error answer. The one place statuses become exceptions."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    error_code = body.get("error_code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    common: dict[str, Any] = {
        "status_code": status,
        "error_code": error_code,
        "request_id": request_id,
        "body": body,
    }
    if message is None:
        # Not an MLflow-format answer: this URL is not a Hokusai gateway (or a proxy in
        # front of it answered). Say so, with what did answer.
        snippet = response.text[:200].strip()
        if status in (502, 503, 504):
            return errors.RegistryUnavailableError(
                f"{config.api_url} answered {status} (not from the Hokusai gateway: {snippet!r}). "
                "A proxy in front of the registry could not reach it; retry later.",
                status_code=status,
                request_id=request_id,
            )
        return errors.EndpointNotFoundError(
            f"{config.api_url} answered {status} with {snippet!r}, which is not the Hokusai "
            f"gateway's error format: HOKUSAI_API_URL (from {config.url_source}) probably points "
            "at the wrong server or path. It should be the gateway's base URL, e.g. "
            "https://registry.example.com (not …/api/mlflow/api/2.0).",
            **common,
        )
    if status == 401:
        return errors.AuthenticationError(f"{message} (key from {config.key_source})", **common)
    if status == 403:
        return errors.PermissionDeniedError(message, **common)
    if status == 429:
        return errors.RateLimitedError(message, retry_after=_retry_after(response), **common)
    if status in (502, 503, 504):
        return errors.RegistryUnavailableError(
            f"{message}", status_code=status, request_id=request_id
        )
    if error_code == "ENDPOINT_NOT_FOUND":
        return errors.EndpointNotFoundError(message, **common)
    if error_code == "RESOURCE_DOES_NOT_EXIST":
        return errors.NotFoundError(message, **common)
    if error_code == "RESOURCE_ALREADY_EXISTS":
        return errors.ConflictError(message, **common)
    return errors.APIError(message, **common)
