"""``hokusai workspaces``: create, list, show, update and delete workspaces (one per
team), and the public keys each trusts to sign versions, through a gateway or on the
server's own store (see :mod:`hokusai.cli.context`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hokusai.cli.context import AdminDataDir, ApiKey, ApiUrl, Profile, admin, domain_errors
from hokusai.cli.tables import print_table
from hokusai.workspaces.records import TrustedKeyRecord, WorkspaceRecord

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

Signed = Annotated[
    bool | None,
    typer.Option(
        "--require-signed-versions/--no-require-signed-versions",
        help="A protected alias may only name a version signed by a key the workspace "
        "trusts (hokusai workspaces trust-key).",
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
    print(f"signed versions:    {'required' if record.require_signed_versions else 'not required'}")
    print(f"created:            {record.created_at.isoformat()[:19]}")


@app.command()
@domain_errors
def create(
    name: Name,
    description: Description = None,
    protect: Protect = None,
    no_protected: NoProtected = False,
    gate: Gate = None,
    signed: Signed = None,
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
        require_signed_versions=bool(signed),
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
            "required" if w.require_signed_versions else "-",
            w.description,
        ]
        for w in found
    ]
    columns = ["name", "protected aliases", "gate", "signed", "description"]
    print_table(columns, rows, whole=["name", "gate", "signed"])


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
    signed: Signed = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a workspace's description, protected aliases, promotion gate or whether its
    protected aliases require signed versions (its admin)."""
    aliases = _aliases(protect, no_protected)
    on = admin("workspaces update", data_dir, api_url, api_key, profile)
    record = on.services.workspaces.update(
        on.actor,
        name,
        description=description,
        protected_aliases=aliases,
        promotion_gate=gate,
        require_signed_versions=signed,
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


# ---- trusted keys ---------------------------------------------------------------------------

PublicKeyFile = Annotated[
    Path,
    typer.Argument(
        help="A PEM elliptic-curve public key (openssl ec -in key.pem -pubout -out pub.pem).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
Fingerprint = Annotated[
    str, typer.Argument(help="The key's fingerprint, sha256:<hex> (trusted-keys lists them).")
]
Label = Annotated[str, typer.Option("--label", help="Whose key it is (e.g. release-bot).")]


def _show_key(record: TrustedKeyRecord, as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(record.public(), indent=2))
    else:
        print(f"{what} {record.fingerprint} ({record.label or 'no label'}) in {record.workspace}")


@app.command("trust-key")
@domain_errors
def trust_key(
    name: Name,
    public_key: PublicKeyFile,
    label: Label = "",
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Trust a public key to sign the workspace's versions (its admin)."""
    on = admin("workspaces trust-key", data_dir, api_url, api_key, profile)
    record = on.services.workspaces.trust_key(
        on.actor, name, public_key.read_text(errors="replace"), label=label
    )
    _show_key(record, as_json, "trusted")


@app.command("untrust-key")
@domain_errors
def untrust_key(
    name: Name,
    fingerprint: Fingerprint,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Stop trusting a key: the versions it signed no longer count as signed (its admin)."""
    on = admin("workspaces untrust-key", data_dir, api_url, api_key, profile)
    record = on.services.workspaces.untrust_key(on.actor, name, fingerprint)
    _show_key(record, as_json, "no longer trusted:")


@app.command("trusted-keys")
@domain_errors
def trusted_keys(
    name: Name,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """List the public keys the workspace trusts to sign versions (any of its keys)."""
    on = admin("workspaces trusted-keys", data_dir, api_url, api_key, profile)
    found = on.services.workspaces.trusted_keys(on.actor, name)
    if as_json:
        print(json.dumps([k.public() for k in found], indent=2))
        return
    rows = [[k.fingerprint, k.label or "-", k.added_at.isoformat()[:19], k.added_by] for k in found]
    print_table(["fingerprint", "label", "added", "added by"], rows, whole=["fingerprint"])
