"""``hokusai audit``: read the audit log, through a gateway or on the server's own store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hokusai.cli.context import (
    AdminDataDir,
    ApiKey,
    ApiUrl,
    Profile,
    admin,
    domain_errors,
    since_option,
)
from hokusai.cli.tables import print_table


@domain_errors
def audit(
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key's entries.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (e.g. keys.create).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="A duration back (e.g. 1h, 7d) or an ISO time.")
    ] = None,
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace", help="Only this workspace's entries (a workspace admin: always its own)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, help="At most this many entries.")
    ] = 50,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the audit log (authenticated writes and admin actions), newest first."""
    start = since_option(since)
    on = admin("audit", data_dir, api_url, api_key, profile)
    found = on.services.audit.query(
        on.actor, key_id=key_id, action=action, since=start, limit=limit, workspace=workspace
    )
    entries = [e.public() for e in found]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    rows = [
        [
            str(e["at"])[:19],
            str(e["key_id"]),
            str(e["workspace"] or "-"),
            str(e["action"]),
            str(e["method"]),
            str(e["path"]),
            str(e["status"]),
            str(e["request_id"]),
        ]
        for e in entries
    ]
    columns = ["at", "key", "workspace", "action", "method", "path", "status", "request id"]
    print_table(columns, rows, whole=["at", "key", "status", "request id"])
