"""The SDK's exceptions. Every one says what happened and what to do.

::

    HokusaiError
    ├── ConfigurationError          no key or URL, or an unusable profile or CA bundle
    ├── ValidationError             bad input, refused before any network call
    ├── RegistryUnavailableError    no usable answer: refused, unknown host, TLS failure,
    │                               timed out, or 502/503/504 (keeps error_code and message)
    ├── APIError                    the server answered with an error
    │   ├── AuthenticationError     401: missing, malformed, unknown, revoked or expired key
    │   ├── PermissionDeniedError   403: the key's scope is too small (names the scope)
    │   ├── EndpointNotFoundError   404 ENDPOINT_NOT_FOUND, or the URL is not a Hokusai gateway
    │   ├── NotFoundError           404 RESOURCE_DOES_NOT_EXIST: no such model, version, run
    │   ├── ConflictError           RESOURCE_ALREADY_EXISTS
    │   ├── RateLimitedError        429: over a rate limit (retry_after)
    │   └── ServerError             500: the server failed unexpectedly
    ├── RegistrationError           a registration failed at a named step (what it left)
    ├── UnsafeModelError            loading would unpickle the model (allow_pickle=True)
    └── IntegrityError              a model's files differ from its manifest (names each
                                    file); defined in ``hokusai.integrity``

A registration that fails because of one of the errors above raises a
``RegistrationError`` that is *also* an instance of that error's class: a 403 while
registering is caught by ``except PermissionDeniedError`` and by ``except
RegistrationError`` alike, and carries both the cause's fields (``status_code``,
``error_code``, ``request_id``) and the registration's (``step``, ``registration_id``,
``left_behind``); the cause itself is its ``__cause__``::

    try:
        registry.register_baseline(model, "lead_scoring")
    except PermissionDeniedError as denied:     # a read key
        print(denied.status_code, denied.step, denied.left_behind)
"""

from __future__ import annotations

from typing import Any


class HokusaiError(Exception):
    """Root of every error the SDK raises."""


class ConfigurationError(HokusaiError):
    """The SDK lacks a key or URL, or a profile or CA bundle cannot be used."""


class ValidationError(HokusaiError, ValueError):
    """An argument is invalid; nothing was sent."""


class UnsafeModelError(HokusaiError):
    """Loading the model would unpickle it, which runs the code its files hold; nothing
    was loaded. ``reasons`` says what in the model is a pickle."""

    def __init__(self, subject: str, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(
            f"{subject} loads with pickle, which runs whatever code its files hold "
            f"({'; '.join(reasons)}); nothing was loaded. Pass allow_pickle=True only if you "
            "trust whoever registered it; a scikit-learn model registered in the skops "
            "format loads without it."
        )


def _with_request_id(text: str, error_code: str | None, request_id: str | None) -> str:
    code = f"{error_code}: " if error_code else ""
    suffix = f" (request id {request_id})" if request_id else ""
    return f"{code}{text}{suffix}"


class RegistryUnavailableError(HokusaiError):
    """No usable answer: the registry could not be reached, or answered 502/503/504.

    For a 502/503/504 of the gateway, ``error_code`` and ``message`` are the gateway's own
    (``TEMPORARILY_UNAVAILABLE``, ``DEADLINE_EXCEEDED``, …).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
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
        return _with_request_id(self.message, self.error_code, self.request_id)


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
        return _with_request_id(self.message, self.error_code, self.request_id)


class AuthenticationError(APIError):
    """401: the key is missing, malformed, unknown, revoked or expired."""


class PermissionDeniedError(APIError):
    """403: the key is valid but may not do this. :attr:`details` says what refused it
    (``refused_by``: role, workspace, model_pattern, protected_alias, promotion_gate,
    signed_versions or source) and who can grant it (``granted_by``), when the gateway said so."""

    @property
    def details(self) -> dict[str, Any]:
        body = self.body if isinstance(self.body, dict) else {}
        found = body.get("details")
        return dict(found) if isinstance(found, dict) else {}


class EndpointNotFoundError(APIError):
    """404 ENDPOINT_NOT_FOUND, or an answer that is not a Hokusai gateway's (check
    HOKUSAI_API_URL)."""


class NotFoundError(APIError):
    """404 RESOURCE_DOES_NOT_EXIST: the model, version or run does not exist."""


class ConflictError(APIError):
    """The resource already exists."""


class RateLimitedError(APIError):
    """429: over a rate limit; ``retry_after`` seconds until a retry may pass."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """500: the server failed unexpectedly; the request id finds it in the server's log."""


class RegistrationError(HokusaiError):
    """A registration failed at ``step``; ``left_behind`` lists what it made that is still
    there (empty when nothing is).

    Raised as an instance of the cause's class too (see :func:`registration_failure`), so
    ``except PermissionDeniedError`` catches a 403 while registering. Call the same
    registration again with the same ``registration_id`` to resume it, or
    ``ModelRegistry.cleanup_failed()`` (``hokusai gc``) to remove what it left.
    """

    def __init__(
        self,
        step: str,
        registration_id: str,
        cause: BaseException,
        left_behind: dict[str, str],
    ) -> None:
        reason = str(cause).rstrip(".")
        if left_behind:
            leftovers = ", ".join(f"{k}={v}" for k, v in left_behind.items())
            outcome = (
                f"Left behind: {leftovers}. Retry with registration_id={registration_id!r} to "
                "resume, or run `hokusai gc` to remove the leftovers."
            )
        else:
            outcome = "Nothing was left behind."
        text = f"registration {registration_id} failed at step '{step}': {reason}. {outcome}"
        HokusaiError.__init__(self, text)
        # The cause's own fields first (status_code, error_code, request_id, …), so that an
        # instance that is also the cause's class has them; then the registration's.
        if isinstance(cause, HokusaiError):
            self.__dict__.update(vars(cause))
        self.message = text
        self.step = step
        self.registration_id = registration_id
        self.left_behind = left_behind
        # Set here as well as by ``raise … from``: an error made but not yet raised has it.
        self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        """The error the failed step raised: the same as ``__cause__``."""
        return self.__cause__

    def __str__(self) -> str:
        return self.message


# One combined class per cause class, made once: ``RegistrationError[PermissionDeniedError]``.
_REGISTRATION_ERROR_CLASSES: dict[type[HokusaiError], type[RegistrationError]] = {}


def _registration_error_class(cause_class: type[HokusaiError]) -> type[RegistrationError]:
    found = _REGISTRATION_ERROR_CLASSES.get(cause_class)
    if found is None:
        found = type(
            f"RegistrationError[{cause_class.__name__}]",
            (RegistrationError, cause_class),
            {"__module__": __name__, "__doc__": RegistrationError.__doc__},
        )
        _REGISTRATION_ERROR_CLASSES[cause_class] = found
    return found


def registration_failure(
    step: str, registration_id: str, cause: BaseException, left_behind: dict[str, str]
) -> RegistrationError:
    """The error a failed registration raises: a RegistrationError that is also an
    instance of the cause's SDK error class (when the cause is one)."""
    kind: type[RegistrationError] = RegistrationError
    if isinstance(cause, HokusaiError) and not isinstance(cause, RegistrationError):
        kind = _registration_error_class(type(cause))
    return kind(step, registration_id, cause, left_behind)
