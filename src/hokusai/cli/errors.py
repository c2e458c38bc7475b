"""Domain errors on the command line: one message format and one exit code per error.

Every ``hokusai`` command that calls a service (on the local store or through a remote
gateway) shows a :class:`~hokusai.errors.DomainError` through :func:`exit_with`, so the
same refusal reads the same and exits the same from anywhere.

Exit codes (also in ``hokusai --help``'s epilogue once the commands use them):

====  ==========================================================
0     done
1     the thing does not exist, or the state does not allow it
2     invalid input (the same code typer uses for a bad option)
3     not signed in: no key, or the key is not accepted
4     the key (or person) may not do this
5     the server or its store did not answer; a retry may pass
70    a defect (``INTERNAL_ERROR``); please report it
====  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import typer
from rich.console import Console

from hokusai.errors import DomainError, ErrorCode

EXIT_CODES: Mapping[ErrorCode, int] = MappingProxyType(
    {
        ErrorCode.RESOURCE_DOES_NOT_EXIST: 1,
        ErrorCode.RESOURCE_ALREADY_EXISTS: 1,
        ErrorCode.INVALID_STATE: 1,
        ErrorCode.ENDPOINT_NOT_FOUND: 1,
        ErrorCode.INVALID_PARAMETER_VALUE: 2,
        ErrorCode.BAD_REQUEST: 2,
        ErrorCode.UNAUTHENTICATED: 3,
        ErrorCode.PERMISSION_DENIED: 4,
        ErrorCode.REQUEST_LIMIT_EXCEEDED: 5,
        ErrorCode.TEMPORARILY_UNAVAILABLE: 5,
        ErrorCode.DEADLINE_EXCEEDED: 5,
        ErrorCode.INTERNAL_ERROR: 70,
    }
)

_stderr = Console(stderr=True, highlight=False)


def exit_code(error: DomainError) -> int:
    """The process exit code for ``error``."""
    return EXIT_CODES[error.code]


def render(error: DomainError) -> str:
    """The line shown for ``error``: ``error: <message>``; a defect also names its code.

    >>> from hokusai.errors import NotFound
    >>> render(NotFound("no key 'key_1'"))
    "error: no key 'key_1'"
    """
    if error.code is ErrorCode.INTERNAL_ERROR:
        return f"error ({error.code.value}): {error.message}"
    return f"error: {error.message}"


def exit_with(error: DomainError) -> typer.Exit:
    """Print ``error`` on stderr and return the ``typer.Exit`` to raise: ``raise exit_with(e)``."""
    _stderr.print(render(error), markup=False)
    return typer.Exit(exit_code(error))
