"""``hokusai gc``: remove what failed or abandoned registrations left behind."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hokusai.cli.client import ApiKey, ApiUrl, Profile, registry, reported_errors
from hokusai.cli.console import err
from hokusai.durations import parse_duration


def gc(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only leftovers at least this old (e.g. 1h, 2d).")
    ] = "1h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete runs of failed registrations (and their files); nothing else."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    with reported_errors(), registry(api_url, api_key, profile) as client:
        removed = client.cleanup_failed(age, dry_run=dry_run)
    if as_json:
        print(json.dumps(removed, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        print(
            f"{verb} run {entry['run_id']} ({entry['status']}, registration "
            f"{entry['registration_id']})"
        )
    err.print(f"{verb} {len(removed)} leftover run(s)")
