"""``hokusai keys``: create, list, revoke and rotate API keys, straight on the store."""

from __future__ import annotations

import getpass
import json
import uuid
from typing import Annotated, Literal

import typer

from hokusai.cli.context import DataDir, fail, open_keys
from hokusai.cli.tables import print_table
from hokusai.db.timestamps import utcnow
from hokusai.gateway.admin_api import parse_duration
from hokusai.gateway.audit import AuditEntry, AuditLog
from hokusai.keys.scopes import Scope
from hokusai.keys.service import AmbiguousKeyReference, KeyNotFound

app = typer.Typer(help="Manage API keys (on the server's store).", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def cli_audit(log: AuditLog, action: str, command: str, **detail: object) -> None:
    """Key changes made on the store directly are audited too, under the OS user."""
    log.record(
        AuditEntry(
            request_id="cli-" + uuid.uuid4().hex,
            key_id=None,
            owner=getpass.getuser(),
            action=action,
            method="CLI",
            path=f"hokusai {command}",
            status=0,
            client="cli",
            detail=dict(detail),
        )
    )


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[
        Scope, typer.Option("--scope", help="What the key may do: read ⊂ write ⊂ admin.")
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
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key. Prints only the key (shown once); --json for the record too."""
    try:
        lifetime = parse_duration(expires_in) if expires_in else None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    keys, log = open_keys(data_dir)
    try:
        issued = keys.create(
            name=name,
            owner=owner or getpass.getuser(),
            scope=scope,
            env=env,
            expires_in=lifetime,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    cli_audit(log, "keys.create", "keys create", created=issued.record.id, scope=scope.value)
    if as_json:
        print(json.dumps({"key": issued.key, "record": issued.record.public(utcnow())}, indent=2))
    else:
        print(issued.key)


@app.command("list")
def list_keys(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (never the keys themselves: their display prefixes)."""
    keys, _ = open_keys(data_dir)
    now = utcnow()
    records = [k.public(now) for k in keys.list(include_revoked=include_revoked)]
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
            str(r["state"]),
            str(r["expires_at"] or "never")[:16],
            str(r["last_used_at"] or "never")[:16],
        ]
        for r in records
    ]
    columns = ["id", "prefix", "name", "owner", "scope", "state", "expires", "last used"]
    print_table(columns, rows, whole=["id", "prefix", "scope", "state", "expires", "last used"])


@app.command()
def revoke(
    key: Annotated[str, typer.Argument(help="Key id, display prefix or the whole key.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: every gateway refuses it within a second."""
    keys, log = open_keys(data_dir)
    try:
        record = keys.revoke(key)
    except (KeyNotFound, AmbiguousKeyReference) as exc:
        raise fail(str(exc)) from None
    cli_audit(log, "keys.revoke", "keys revoke", revoked=record.id)
    if as_json:
        print(json.dumps(record.public(utcnow()), indent=2))
    else:
        print(f"revoked {record.id} ({record.display_prefix}…, {record.name})")


@app.command()
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
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace a key with a new one (same name, owner, scope); the old one is revoked."""
    try:
        lifetime = parse_duration(expires_in) if expires_in else None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    keys, log = open_keys(data_dir)
    try:
        issued = keys.rotate(key, expires_in=lifetime)
    except (KeyNotFound, AmbiguousKeyReference, ValueError) as exc:
        raise fail(str(exc)) from None
    cli_audit(
        log,
        "keys.rotate",
        "keys rotate",
        rotated=issued.record.rotated_from,
        replacement=issued.record.id,
    )
    if as_json:
        print(json.dumps({"key": issued.key, "record": issued.record.public(utcnow())}, indent=2))
    else:
        print(issued.key)
