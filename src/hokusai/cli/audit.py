"""``hokusai audit``: read the audit log from the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hokusai.cli.context import DataDir, open_keys, parse_since
from hokusai.cli.tables import print_table


def audit(
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key's entries.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="A duration back (e.g. 1h, 7d) or an ISO time.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, help="At most this many entries.")
    ] = 50,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the audit log (authenticated writes and admin actions), newest first."""
    start = parse_since(since) if since else None
    _, log = open_keys(data_dir)
    entries = log.read(key_id=key_id, since=start, limit=limit)
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    rows = [
        [
            str(e["at"])[:19],
            str(e["key_id"]),
            str(e["action"]),
            str(e["method"]),
            str(e["path"]),
            str(e["status"]),
            str(e["request_id"]),
        ]
        for e in entries
    ]
    columns = ["at", "key", "action", "method", "path", "status", "request id"]
    print_table(columns, rows, whole=["at", "key", "status", "request id"])
