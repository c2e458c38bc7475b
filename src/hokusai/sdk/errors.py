"""The SDK's exceptions. Every one says what happened and what to do.

::

    HokusaiError
    ├── ConfigurationError          no key or URL, or an unusable profile
    ├── ValidationError             bad input, refused before any network call
    ├── RegistryUnavailableError    no answer: connection refused, timed out, 502/503/504
    ├── APIError                    the server answered with an error
    │   ├── AuthenticationError     401: missing, malformed, unknown, revoked or expired key
    │   ├── PermissionDeniedError   403: the key's scope is too small (names the scope)
    │   ├── EndpointNotFoundError   404 ENDPOINT_NOT_FOUND: the URL does not serve this API
    │   ├── NotFoundError           404 RESOURCE_DOES_NOT_EXIST: no such model, version, run
    │   ├── ConflictError           RESOURCE_ALREADY_EXISTS
    │   └── RateLimitedError        429: over a rate limit (retry_after)
    └── RegistrationError           a registration failed at a named step (what it left)
"""

from __future__ import annotations

from typing import Any


class HokusaiError(Exception):
    """Root of every error the SDK raises."""


class ConfigurationError(HokusaiError):
    """The SDK lacks a key or URL, or a profile cannot be used."""


class ValidationError(HokusaiError, ValueError):
    """An argument is invalid; nothing was sent."""


class RegistryUnavailableError(HokusaiError):
    """The registry did not answer (or answered 502/503/504) within the retry budget."""

    def __init__(
        self, message: str, *, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class APIError(HokusaiError):
    """The server answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        suffix = f" (request id {self.request_id})" if self.request_id else ""
        code = f"{self.error_code}: " if self.error_code else ""
        return f"{code}{self.message}{suffix}"


class AuthenticationError(APIError):
    """401: the key is missing, malformed, unknown, revoked or expired."""


class PermissionDeniedError(APIError):
    """403: the key is valid but its scope does not allow this."""


class EndpointNotFoundError(APIError):
    """404 ENDPOINT_NOT_FOUND: the URL does not serve the Hokusai API (check HOKUSAI_API_URL)."""


class NotFoundError(APIError):
    """404 RESOURCE_DOES_NOT_EXIST: the model, version or run does not exist."""


class ConflictError(APIError):
    """The resource already exists."""


class RateLimitedError(APIError):
    """429: over a rate limit; ``retry_after`` seconds until a retry may pass."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RegistrationError(HokusaiError):
    """A registration failed at ``step``; ``left_behind`` lists what exists so far.

    Call the same registration again with the same ``registration_id`` to resume it,
    or ``ModelRegistry.cleanup_failed()`` (``hokusai gc``) to remove what it left.
    """

    def __init__(
        self,
        step: str,
        registration_id: str,
        cause: BaseException,
        left_behind: dict[str, Any],
    ) -> None:
        leftovers = ", ".join(f"{k}={v}" for k, v in left_behind.items() if v) or "nothing"
        super().__init__(
            f"registration {registration_id} failed at step '{step}': "
            f"{str(cause).rstrip('.')}. Left behind: "
            f"{leftovers}. Retry with registration_id={registration_id!r} to resume, or run "
            "`hokusai gc` to remove the leftovers."
        )
        self.step = step
        self.registration_id = registration_id
        self.cause = cause
        self.left_behind = left_behind
