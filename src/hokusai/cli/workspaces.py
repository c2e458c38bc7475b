"""``hokusai workspaces``: create, list, show, update and delete workspaces (one per
team), through a gateway or on the server's own store (see :mod:`hokusai.cli.context`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hokusai.cli.context import AdminDataDir, ApiKey, ApiUrl, Profile, admin, domain_errors
from hokusai.cli.tables import print_table
from hokusai.workspaces.records import WorkspaceRecord

app = typer.Typer(
    help="Manage workspaces: one per team, isolated in MLflow, with protected aliases.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Name = Annotated[str, typer.Argument(help="The workspace's name (e.g. gtm).")]
Description = Annotated[
    str | None, typer.Option("--description", help="What the workspace is for.")
]
Protect = Annotated[
    list[str] | None,
    typer.Option(
        "--protect",
        help="An alias only a promote key may move; repeatable (replaces the list; "
        "default on create: production, champion).",
    ),
]
NoProtected = Annotated[
    bool, typer.Option("--no-protected-aliases", help="Protect no alias at all.")
]
Gate = Annotated[
    bool | None,
    typer.Option(
        "--promotion-gate/--no-promotion-gate",
        help="A protected alias may only name a version whose metric meets its baseline.",
        show_default=False,
    ),
]


def _aliases(protect: list[str] | None, none: bool) -> list[str] | None:
    if none and protect:
        raise typer.BadParameter("give --protect or --no-protected-aliases, not both")
    return [] if none else protect


def _show(record: WorkspaceRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record.public(), indent=2))
        return
    aliases = ", ".join(record.protected_aliases) or "(none)"
    print(f"workspace:          {record.name}")
    print(f"description:        {record.description or '-'}")
    print(f"protected aliases:  {aliases}")
    print(f"promotion gate:     {'on' if record.promotion_gate else 'off'}")
    print(f"created:            {record.created_at.isoformat()[:19]}")


@app.command()
@domain_errors
def create(
    name: Name,
    description: Description = None,
    protect: Protect = None,
    no_protected: NoProtected = False,
    gate: Gate = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a workspace, in MLflow too (a platform admin, or the operator)."""
    aliases = _aliases(protect, no_protected)
    on = admin("workspaces create", data_dir, api_url, api_key, profile)
    record = on.services.workspaces.create(
        on.actor,
        name,
        description=description or "",
        protected_aliases=aliases,
        promotion_gate=bool(gate),
    )
    _show(record, as_json)


@app.command("list")
@domain_errors
def list_workspaces(
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """List workspaces (a workspace's key sees its own)."""
    on = admin("workspaces list", data_dir, api_url, api_key, profile)
    found = on.services.workspaces.list(on.actor)
    if as_json:
        print(json.dumps([w.public() for w in found], indent=2))
        return
    rows = [
        [
            w.name,
            ", ".join(w.protected_aliases) or "-",
            "on" if w.promotion_gate else "off",
            w.description,
        ]
        for w in found
    ]
    columns = ["name", "protected aliases", "gate", "description"]
    print_table(columns, rows, whole=["name", "gate"])


@app.command()
@domain_errors
def show(
    name: Name,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one workspace's settings."""
    on = admin("workspaces show", data_dir, api_url, api_key, profile)
    _show(on.services.workspaces.get(on.actor, name), as_json)


@app.command()
@domain_errors
def update(
    name: Name,
    description: Description = None,
    protect: Protect = None,
    no_protected: NoProtected = False,
    gate: Gate = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a workspace's description, protected aliases or promotion gate (its admin)."""
    aliases = _aliases(protect, no_protected)
    on = admin("workspaces update", data_dir, api_url, api_key, profile)
    record = on.services.workspaces.update(
        on.actor, name, description=description, protected_aliases=aliases, promotion_gate=gate
    )
    _show(record, as_json)


@app.command()
@domain_errors
def delete(
    name: Name,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete a workspace MLflow holds nothing in; its keys are revoked and its webhook
    endpoints disabled (a platform admin, or the operator)."""
    on = admin("workspaces delete", data_dir, api_url, api_key, profile)
    record = on.services.workspaces.delete(on.actor, name)
    if as_json:
        print(json.dumps(record.public(), indent=2))
    else:
        print(f"deleted workspace {record.name}: its keys are revoked, its endpoints disabled")
