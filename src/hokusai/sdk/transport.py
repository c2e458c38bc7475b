"""HTTP to the gateway: one client, the retry policy applied, answers mapped to errors.

The SDK speaks MLflow's REST API through the gateway itself rather than through the
MLflow client library, so that the key never has to be put in the process environment,
retries follow ``hokusai.sdk.retry`` alone, and every error is typed.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from hokusai.sdk import errors
from hokusai.sdk.config import ENV_URL, ClientConfig
from hokusai.sdk.retry import Attempt, NoAnswer, RetryBudget, should_retry_hint
from hokusai.version import __version__

log = logging.getLogger("hokusai.sdk")

MLFLOW_API = "/api/mlflow/api/2.0/mlflow/"
ARTIFACTS_API = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/"
# Bytes per piece of a received body (``request(receive=…)``).
RECEIVE_PIECE = 1024 * 1024


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
            verify=tls_context(config),
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
        receive: Callable[[Iterator[bytes]], None] | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying what ``hokusai.sdk.retry`` allows; raise
        typed errors.

        ``content`` is bytes or a function returning a fresh iterable of chunks, so that a
        streamed body can be sent again on a retry. With ``receive``, a successful answer's
        body is not kept: it is handed to ``receive`` piece by piece as it arrives (a large
        file in bounded memory). A connection broken meanwhile is retried like any other
        failure, and ``receive`` is then called again with the body from its start.
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        budget = RetryBudget(self.max_retry_time)
        request_id = uuid.uuid4().hex
        while True:
            body = content() if callable(content) else content
            try:
                response = self._client.send(
                    self._client.build_request(
                        method,
                        path,
                        params=params,
                        json=json,
                        content=body,
                        headers={"X-Request-ID": request_id, **(headers or {})},
                        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                    ),
                    stream=True,
                )
                try:
                    if receive is not None and response.status_code < 400:
                        receive(response.iter_bytes(RECEIVE_PIECE))
                    else:
                        response.read()
                finally:
                    response.close()
            except httpx.TransportError as exc:
                kind = classify(exc)
                delay = budget.next_delay(Attempt(no_answer=kind, idempotent=idempotent))
                if delay is None:
                    raise self._no_answer(exc, kind, request_id, budget) from exc
                time.sleep(delay)
                continue
            if response.status_code < 400:
                return response
            outcome = Attempt(
                status=response.status_code,
                retry_after=_retry_after(response),
                should_retry=should_retry_hint(response.headers.get("x-should-retry")),
                from_gateway=_error_fields(response)[2] is not None,
                idempotent=idempotent,
            )
            delay = budget.next_delay(outcome)
            if delay is None:
                raise error_from_response(response, self.config)
            time.sleep(delay)

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON object a successful answer holds; an answer that is not one did not
        come from a Hokusai gateway."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return {}
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise not_a_gateway(response, self.config)
        return answer

    def mlflow(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``/api/2.0/mlflow/<endpoint>`` through the gateway; the JSON answer."""
        return self.json(method, MLFLOW_API + endpoint, **kwargs)

    def _no_answer(
        self, exc: httpx.TransportError, kind: NoAnswer, request_id: str, budget: RetryBudget
    ) -> errors.HokusaiError:
        url = self.config.api_url
        tried = (
            f"{ENV_URL} is not set; tried {url}"
            if self.config.url_source == "default"
            else f"{url} (from {self.config.url_source})"
        )
        cause = _root_cause(exc)
        if kind is NoAnswer.REFUSED:
            reason = f"connection refused by {tried}"
            fix = (
                f"Set {ENV_URL} (or pass api_url=…, or run `hokusai login`) to the gateway's "
                "URL and check that it is running (`hokusai serve`; `hokusai doctor` names the "
                "failing hop)."
            )
        elif isinstance(cause, ssl.SSLCertVerificationError):
            reason = f"the TLS certificate of {tried} is not trusted ({cause.verify_message})"
            fix = (
                "If the registry uses a private CA, set HOKUSAI_CA_BUNDLE (or pass "
                "ca_bundle=…) to its PEM bundle."
            )
        elif isinstance(cause, ssl.SSLError):
            reason = f"the TLS handshake with {tried} failed ({cause.reason or cause})"
            fix = (
                "If the server speaks plain HTTP, use an http:// URL; otherwise check its TLS "
                "setup (`hokusai doctor`)."
            )
        elif isinstance(cause, socket.gaierror):
            host = urlsplit(url).hostname
            reason = f"the host {host!r} of {tried} is unknown ({cause.strerror or cause})"
            fix = f"Check the host name in {ENV_URL}."
        elif isinstance(exc, httpx.TimeoutException):
            reason = f"{tried} did not answer in time ({type(exc).__name__})"
            fix = "The registry may be overloaded; retry later or raise timeout=…."
        else:
            reason = f"the connection to {tried} broke ({type(exc).__name__}: {exc})"
            fix = "Retry later; `hokusai doctor` checks each hop."
        waited = (
            f", after retrying for {budget.elapsed():.1f} s" if budget.attempt else " (not retried)"
        )
        return errors.RegistryUnavailableError(
            f"The registry is unavailable: {reason}{waited}. {fix}", request_id=request_id
        )


def tls_context(config: ClientConfig) -> ssl.SSLContext:
    """The TLS settings of the SDK's client: the system's trust store, or the configured
    CA bundle (``HOKUSAI_CA_BUNDLE``, else ``SSL_CERT_FILE``) instead."""
    if config.ca_bundle is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=config.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigurationError(
            f"cannot use the CA bundle {config.ca_bundle} (from {config.ca_bundle_source}): "
            f"{exc}. It must be a readable PEM file of CA certificates."
        ) from None


def _root_cause(exc: BaseException) -> BaseException:
    """The lowest-level error under httpx's and httpcore's wrappers."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return seen


def classify(exc: httpx.TransportError) -> NoAnswer:
    """What a transport error means for a retry: the one place they are told apart."""
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLError | socket.gaierror):
        return NoAnswer.PERMANENT
    if isinstance(exc, httpx.ConnectError):
        return NoAnswer.REFUSED if isinstance(cause, ConnectionRefusedError) else NoAnswer.NOT_SENT
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return NoAnswer.NOT_SENT
    return NoAnswer.BROKEN


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _error_fields(response: httpx.Response) -> tuple[Any, str | None, str | None]:
    """(body, error_code, message); message is None unless the answer is in the error
    format of MLflow and the gateway."""
    try:
        body = response.json()
    except ValueError:
        return None, None, None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return body, None, None
    code = body.get("error_code")
    return body, code if isinstance(code, str) else None, body["message"]


def not_a_gateway(response: httpx.Response, config: ClientConfig) -> errors.EndpointNotFoundError:
    status = response.status_code
    snippet = response.text[:200].strip()
    return errors.EndpointNotFoundError(
        f"{config.api_url} answered {status} with {snippet!r}, which is not the Hokusai "
        f"gateway's error format: {ENV_URL} (from {config.url_source}) probably points "
        "at the wrong server or path. It should be the gateway's base URL, e.g. "
        "https://registry.example.com (not …/api/mlflow/api/2.0).",
        status_code=status,
        request_id=response.headers.get("x-request-id"),
        body=snippet,
    )


def error_from_response(response: httpx.Response, config: ClientConfig) -> errors.HokusaiError:
    """The typed error for an error answer. The one place statuses become exceptions."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    body, error_code, message = _error_fields(response)
    common: dict[str, Any] = {
        "status_code": status,
        "error_code": error_code,
        "request_id": request_id,
        "body": body,
    }
    if message is None:
        # Not an MLflow-format answer: decided by the status what it most likely is.
        snippet = response.text[:200].strip()
        if status in (502, 503, 504):
            return errors.RegistryUnavailableError(
                f"{config.api_url} answered {status} (not from the Hokusai gateway: "
                f"{snippet!r}). A proxy in front of the registry could not reach it; retry "
                "later.",
                status_code=status,
                request_id=request_id,
            )
        if status == 500:
            return errors.ServerError(
                f"{config.api_url} failed with 500 and no error message ({snippet!r}); the "
                "request id finds it in the server's log.",
                **common,
            )
        return not_a_gateway(response, config)
    if status == 401:
        return errors.AuthenticationError(f"{message} (key from {config.key_source})", **common)
    if status == 403:
        return errors.PermissionDeniedError(message, **common)
    if status == 429:
        return errors.RateLimitedError(message, retry_after=_retry_after(response), **common)
    if status in (502, 503, 504):
        return errors.RegistryUnavailableError(message, **common)
    if status == 500:
        return errors.ServerError(message, **common)
    if error_code == "ENDPOINT_NOT_FOUND":
        return errors.EndpointNotFoundError(message, **common)
    if error_code == "RESOURCE_DOES_NOT_EXIST":
        return errors.NotFoundError(message, **common)
    if error_code == "RESOURCE_ALREADY_EXISTS":
        return errors.ConflictError(message, **common)
    return errors.APIError(message, **common)
