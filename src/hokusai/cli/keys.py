"""``hokusai keys``: create, list, revoke and rotate API keys, through a gateway or on the
server's own store (see :mod:`hokusai.cli.context` for which)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from hokusai.cli.context import (
    AdminDataDir,
    ApiKey,
    ApiUrl,
    Profile,
    admin,
    domain_errors,
    duration_option,
)
from hokusai.cli.tables import print_table
from hokusai.keys.records import IssuedKey
from hokusai.keys.scopes import Scope
from hokusai.timestamps import utcnow

app = typer.Typer(
    help="Manage API keys (through a gateway with an admin key, or on the server's store).",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _print_issued(issued: IssuedKey, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"key": issued.key, "record": issued.record.public(utcnow())}, indent=2))
    else:
        print(issued.key)


@app.command()
@domain_errors
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope", help="The key's role in its workspace: read ⊂ write ⊂ promote ⊂ admin."
        ),
    ] = Scope.WRITE,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30d, 12h (default: none).")
    ] = None,
    env: Annotated[
        Literal["live", "test"],
        typer.Option(
            "--env",
            help="hk_live_ keys for production, hk_test_ keys for tests.",
        ),
    ] = "live",
    owner: Annotated[
        str | None, typer.Option("--owner", help="Who holds the key (default: you).")
    ] = None,
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            help="The workspace it belongs to (default: yours; on the store: 'default').",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Limit its registry writes to models matching this pattern ('LSCOR*'); "
            "repeatable.",
        ),
    ] = None,
    platform: Annotated[
        bool,
        typer.Option(
            "--platform", help="A platform admin key (with --scope admin): every workspace."
        ),
    ] = False,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key. Prints only the key (shown once); --json for the record too."""
    lifetime = duration_option(expires_in)
    on = admin("keys create", data_dir, api_url, api_key, profile)
    issued = on.services.keys.create(
        on.actor,
        name=name,
        owner=owner,
        scope=scope,
        env=env,
        expires_in=lifetime,
        workspace=workspace,
        platform=platform,
        models=models or [],
    )
    _print_issued(issued, as_json)


@app.command("list")
@domain_errors
def list_keys(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    workspace: Annotated[
        str | None,
        typer.Option("--workspace", help="Only this workspace's keys (a platform admin)."),
    ] = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (never the keys themselves: their display prefixes). A workspace's
    admin sees its workspace's keys."""
    on = admin("keys list", data_dir, api_url, api_key, profile)
    now = utcnow()
    found = on.services.keys.list(on.actor, include_revoked=include_revoked, workspace=workspace)
    records = [k.public(now) for k in found]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    rows = [
        [
            str(r["id"]),
            f"{r['display_prefix']}…",
            str(r["name"]),
            str(r["owner"]),
            str(r["scope"]),
            str(r["workspace"] or "(platform)"),
            ",".join(r["models"]) or "*",  # type: ignore[arg-type]
            str(r["state"]),
            str(r["expires_at"] or "never")[:16],
            str(r["last_used_at"] or "never")[:16],
        ]
        for r in records
    ]
    columns = [
        "id",
        "prefix",
        "name",
        "owner",
        "scope",
        "workspace",
        "models",
        "state",
        "expires",
        "last used",
    ]
    whole = ["id", "prefix", "scope", "workspace", "state", "expires", "last used"]
    print_table(columns, rows, whole=whole)


@app.command()
@domain_errors
def revoke(
    key: Annotated[str, typer.Argument(help="Key id, display prefix or the whole key.")],
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: every gateway refuses it within a second."""
    on = admin("keys revoke", data_dir, api_url, api_key, profile)
    record = on.services.keys.revoke(on.actor, key)
    if as_json:
        print(json.dumps(record.public(utcnow()), indent=2))
    else:
        print(f"revoked {record.id} ({record.display_prefix}…, {record.name})")


@app.command()
@domain_errors
def rotate(
    key: Annotated[str, typer.Argument(help="Key id, display prefix or the whole key.")],
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="Lifetime of the new key, e.g. 30d, 12h (default: the old key's lifetime, "
            "at least 1h, counted from now).",
        ),
    ] = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace a key with a new one (same name, owner, scope); the old one is revoked."""
    lifetime = duration_option(expires_in)
    on = admin("keys rotate", data_dir, api_url, api_key, profile)
    _print_issued(on.services.keys.rotate(on.actor, key, expires_in=lifetime), as_json)
