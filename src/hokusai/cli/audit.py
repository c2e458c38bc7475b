"""``hokusai audit``: read the audit log from the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hokusai.cli.context import DataDir, open_keys, parse_since


def audit(
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key's entries.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="A duration back (e.g. 1h, 7d) or an ISO time.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
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
    table = Table("at", "key", "action", "method", "path", "status", "request id")
    for e in entries:
        table.add_row(
            str(e["at"])[:19],
            str(e["key_id"]),
            e["action"],
            e["method"],
            e["path"],
            str(e["status"]),
            e["request_id"],
        )
    Console().print(table)
