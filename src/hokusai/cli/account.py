"""``hokusai login`` and ``hokusai whoami``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from hokusai.cli.client import ApiKey, ApiUrl, Profile, registry, reported_errors
from hokusai.cli.console import fail
from hokusai.sdk.config import DEFAULT_API_URL, ENV_KEY, ENV_URL, save_profile


def login(
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            envvar=ENV_URL,
            help="Gateway URL (default: HOKUSAI_API_URL, else asked for).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=ENV_KEY,
            show_envvar=True,
            help="API key (default: HOKUSAI_API_KEY, else asked for without echo).",
        ),
    ] = None,
    profile: Annotated[str, typer.Option("--profile", help="Profile name to save.")] = "default",
) -> None:
    """Check a key against the gateway and save it in your config file (mode 0600)."""
    interactive = sys.stdin.isatty()
    if not api_key and not interactive:
        raise fail(
            "no API key to log in with, and no terminal to ask for one: pass --api-key or "
            "set HOKUSAI_API_KEY",
            2,
        )
    url = api_url or (
        typer.prompt("Gateway URL", default=DEFAULT_API_URL) if interactive else DEFAULT_API_URL
    )
    key = api_key or typer.prompt("API key", hide_input=True)
    with reported_errors(), registry(url, key, None) as client:
        identity = client.check()
        path = save_profile(profile, client.api_url, key)
    print(
        f"logged in to {client.api_url} as {identity['owner']} (key {identity['id']}, scope "
        f"{identity['scope']}); profile '{profile}' saved in {path}",
        file=sys.stderr,
    )


def whoami(
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show which key the gateway sees: id, owner, scope, state."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        identity = client.check()
    if as_json:
        print(json.dumps(identity, indent=2))
        return
    print(
        f"{identity['owner']} · key {identity['id']} ({identity['display_prefix']}…) · "
        f"scope {identity['scope']} · {identity['state']} · {client.api_url}"
    )
