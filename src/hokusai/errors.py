"""The platform's domain errors: what went wrong, as every front-end must be able to say it.

Services raise only these. Each carries an :class:`ErrorCode` (MLflow's own names, so
an HTTP answer reads like MLflow's), and the code alone decides how a front-end shows
it: :func:`http_status` for the HTTP API (used by ``gateway/errors.py``), and
``hokusai.cli.errors`` for a message and an exit code on the command line.

::

    DomainError                     (code, message)
    ├── InvalidInput                INVALID_PARAMETER_VALUE   bad input; nothing changed
    ├── Unauthenticated             UNAUTHENTICATED           no acceptable credential
    ├── PermissionDenied            PERMISSION_DENIED         the actor may not; names what it needs
    ├── NotFound                    RESOURCE_DOES_NOT_EXIST   no such key, endpoint, event
    ├── NoSuchEndpoint              ENDPOINT_NOT_FOUND        no such operation at this address
    ├── Conflict                    RESOURCE_ALREADY_EXISTS   the state changed under the request
    ├── RateLimited                 REQUEST_LIMIT_EXCEEDED    over a limit (retry_after)
    ├── Unavailable                 TEMPORARILY_UNAVAILABLE   a store or upstream did not answer
    ├── DeadlineExceeded            DEADLINE_EXCEEDED         an upstream took too long
    └── InternalError               INTERNAL_ERROR            a defect; the message says where

The root is not called ``HokusaiError``: that name is the SDK's public root
(``hokusai.HokusaiError``), which describes answers a client received, not decisions
the server made.

This module imports nothing but the standard library: the SDK and the CLI import it
without loading a web framework or a database driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class ErrorCode(StrEnum):
    """MLflow's ``ErrorCode`` names that the platform answers with.

    A ``StrEnum``: ``ErrorCode.NOT_FOUND == "RESOURCE_DOES_NOT_EXIST"`` holds, so a code
    goes into a JSON body as it is.
    """

    INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
    BAD_REQUEST = "BAD_REQUEST"
    INVALID_STATE = "INVALID_STATE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
    RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
    RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
    REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


# The HTTP status of each code, as mlflow.protos.databricks_pb2 maps them (MLflow answers
# RESOURCE_ALREADY_EXISTS with 400, not 409, and clients expect that). One exception:
# MLflow answers INVALID_STATE with 500, which clients retry as a server failure; the
# gateway's INVALID_STATE (a READY version's files cannot change) is the caller's to fix,
# so it is a 400.
HTTP_STATUS: Mapping[ErrorCode, int] = MappingProxyType(
    {
        ErrorCode.INVALID_PARAMETER_VALUE: 400,
        ErrorCode.BAD_REQUEST: 400,
        ErrorCode.INVALID_STATE: 400,
        ErrorCode.UNAUTHENTICATED: 401,
        ErrorCode.PERMISSION_DENIED: 403,
        ErrorCode.ENDPOINT_NOT_FOUND: 404,
        ErrorCode.RESOURCE_DOES_NOT_EXIST: 404,
        ErrorCode.RESOURCE_ALREADY_EXISTS: 400,
        ErrorCode.REQUEST_LIMIT_EXCEEDED: 429,
        ErrorCode.INTERNAL_ERROR: 500,
        ErrorCode.TEMPORARILY_UNAVAILABLE: 503,
        ErrorCode.DEADLINE_EXCEEDED: 504,
    }
)


def http_status(code: ErrorCode | str) -> int:
    """The HTTP status a code is answered with: ``http_status("PERMISSION_DENIED") == 403``."""
    return HTTP_STATUS[ErrorCode(code)]


class DomainError(Exception):
    """Root of every error a service raises: an :class:`ErrorCode` and a readable message.

    ``reason`` is a short machine-readable cause (``"scope"``, ``"revoked"``) for metrics
    and logs; it defaults to the code in lower case.
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, code: ErrorCode, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.lower()

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}, {self.message!r})"


class _Coded(DomainError):
    """A subclass whose code is fixed by the class: ``NotFound("no key 'x'")``."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(type(self).code, message, reason=reason)


class InvalidInput(_Coded, ValueError):
    """The input is invalid (and nothing changed); the message says what is allowed."""

    code = ErrorCode.INVALID_PARAMETER_VALUE


class Unauthenticated(_Coded):
    """No credential was presented, or the one presented is not accepted."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(_Coded):
    """The actor is known but may not do this; ``needed`` names the role, ``details`` what
    refused it (``refused_by``: role, workspace, model_pattern, protected_alias,
    promotion_gate, signed_versions or source) and who can grant it, for ``hokusai doctor``."""

    code = ErrorCode.PERMISSION_DENIED

    def __init__(
        self,
        message: str,
        *,
        needed: str,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, reason=reason or "role")
        self.needed = needed
        self.details = dict(details or {})
        if self.details:
            # What refused it is the refusal's reason: said once, by whoever raised it.
            self.details.setdefault("refused_by", self.reason)


class NotFound(_Coded, LookupError):
    """The thing referred to (a key, an endpoint, an event) does not exist."""

    code = ErrorCode.RESOURCE_DOES_NOT_EXIST


class NoSuchEndpoint(_Coded):
    """The address does not serve this operation (an unknown route or method)."""

    code = ErrorCode.ENDPOINT_NOT_FOUND


class Conflict(_Coded):
    """The thing already exists, or changed under the request; nothing was changed."""

    code = ErrorCode.RESOURCE_ALREADY_EXISTS


class RateLimited(_Coded):
    """Over a rate limit; ``retry_after`` seconds until a retry may pass."""

    code = ErrorCode.REQUEST_LIMIT_EXCEEDED

    def __init__(
        self, message: str, *, retry_after: float | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class Unavailable(_Coded):
    """A store or upstream did not answer; nothing was changed, a retry may succeed."""

    code = ErrorCode.TEMPORARILY_UNAVAILABLE


class DeadlineExceeded(_Coded):
    """An upstream did not answer in time."""

    code = ErrorCode.DEADLINE_EXCEEDED


class InternalError(_Coded):
    """A defect: something that should not happen did. The message says where."""

    code = ErrorCode.INTERNAL_ERROR


_CLASS_BY_CODE: Mapping[ErrorCode, type[_Coded]] = MappingProxyType(
    {
        ErrorCode.INVALID_PARAMETER_VALUE: InvalidInput,
        ErrorCode.BAD_REQUEST: InvalidInput,
        ErrorCode.UNAUTHENTICATED: Unauthenticated,
        ErrorCode.PERMISSION_DENIED: PermissionDenied,
        ErrorCode.ENDPOINT_NOT_FOUND: NoSuchEndpoint,
        ErrorCode.RESOURCE_DOES_NOT_EXIST: NotFound,
        ErrorCode.RESOURCE_ALREADY_EXISTS: Conflict,
        ErrorCode.REQUEST_LIMIT_EXCEEDED: RateLimited,
        ErrorCode.INTERNAL_ERROR: InternalError,
        ErrorCode.TEMPORARILY_UNAVAILABLE: Unavailable,
        ErrorCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    }
)


def from_answer(
    error_code: str, message: str, details: Mapping[str, object] | None = None
) -> DomainError:
    """The domain error an MLflow-format answer (``{"error_code", "message"}``) stands for.

    For front-ends that talk to a remote gateway (the CLI with ``--api-url``): the same
    error, so the same message and exit code, as when the service ran locally. An
    unknown code becomes :class:`InternalError` keeping the code in the message.
    """
    try:
        code = ErrorCode(error_code)
    except ValueError:
        return InternalError(f"{error_code}: {message}")
    cls = _CLASS_BY_CODE[code]
    if cls is PermissionDenied:
        details = dict(details or {})
        return PermissionDenied(message, needed=str(details.get("needed") or ""), details=details)
    error = cls(message)
    error.code = code  # BAD_REQUEST stays BAD_REQUEST
    return error
