"""Shared by the CLI commands that talk to a gateway: options, the client, error exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from hokusai.cli.console import err
from hokusai.integrity import IntegrityError
from hokusai.sdk import errors
from hokusai.sdk.config import resolve
from hokusai.sdk.registry import ModelRegistry

ApiUrl = Annotated[
    str | None,
    typer.Option("--api-url", help="Gateway URL (default: HOKUSAI_API_URL, then the profile)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", help="API key (default: HOKUSAI_API_KEY, then the profile)."),
]
Profile = Annotated[str | None, typer.Option("--profile", help="Profile of the config file.")]

# Exit codes, one per kind of failure, so scripts can tell them apart.
EXIT_CODES: dict[type[errors.HokusaiError], int] = {
    errors.ValidationError: 2,
    errors.ConfigurationError: 2,
    errors.AuthenticationError: 3,
    errors.PermissionDeniedError: 3,
    errors.NotFoundError: 4,
    errors.EndpointNotFoundError: 5,
    errors.RegistryUnavailableError: 6,
    errors.RateLimitedError: 6,
    errors.RegistrationError: 7,
    IntegrityError: 8,
}


def exit_code_for(error: errors.HokusaiError) -> int:
    for kind, code in EXIT_CODES.items():
        if isinstance(error, kind):
            return code
    return 1


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn SDK errors into a one-paragraph message and a distinct exit code."""
    try:
        yield
    except errors.HokusaiError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code_for(error)) from None


NO_KEY = (
    "No API key: pass --api-key, set HOKUSAI_API_KEY, or run `hokusai login` to save one "
    "in a profile."
)


def registry(api_url: str | None, api_key: str | None, profile: str | None) -> ModelRegistry:
    try:
        return ModelRegistry(api_key=api_key, api_url=api_url, profile=profile)
    except errors.ConfigurationError:
        if api_key is None and _only_the_key_is_missing(api_url, profile):
            # The SDK's advice names its own argument; on the command line it is an option.
            raise errors.ConfigurationError(NO_KEY) from None
        raise


def _only_the_key_is_missing(api_url: str | None, profile: str | None) -> bool:
    try:
        resolve("key given", api_url, profile)
    except errors.ConfigurationError:
        return False
    return True
