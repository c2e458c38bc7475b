"""``hokusai webhooks``: endpoints, deliveries and replays, through a gateway or on the
server's own store (see :mod:`hokusai.cli.context` for which). Every change is audited.

An endpoint belongs to a workspace and receives only its events. A workspace admin key
works in its own workspace; a platform admin key (and the operator on the store) names
one with ``--workspace``, or sees every workspace's."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal, get_args

import typer

from hokusai.cli.console import err, fail
from hokusai.cli.context import (
    Admin,
    AdminDataDir,
    ApiKey,
    ApiUrl,
    Profile,
    admin,
    domain_errors,
    since_option,
)
from hokusai.cli.tables import print_table
from hokusai.webhooks.records import DELIVERY_STATUSES

app = typer.Typer(
    help="Webhook endpoints and deliveries (through a gateway with an admin key, or on the "
    "server's store).",
    no_args_is_help=True,
)
# The outbox's states, spelled out so that --help lists them.
DeliveryStatus = Literal["pending", "failed", "delivered", "dead"]
assert set(get_args(DeliveryStatus)) == set(DELIVERY_STATUSES)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
EndpointId = Annotated[str, typer.Argument(help="Endpoint id (wh_…).")]
WorkspaceFilter = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        help="Only this workspace's (platform admins; a workspace's key sees its own).",
    ),
]


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _admin(
    command: str,
    data_dir: Any,
    api_url: str | None,
    api_key: str | None,
    profile: str | None,
) -> Admin:
    return admin(f"webhooks {command}", data_dir, api_url, api_key, profile)


@app.command()
@domain_errors
def add(
    url: Annotated[str, typer.Argument(help="Where to POST events (http or https).")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", help="Event type to send (repeatable; default: all)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Only events of models matching this name or glob."),
    ] = None,
    description: Annotated[
        str, typer.Option("--description", help="A note for whoever reads the list.")
    ] = "",
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            help="The workspace whose events it receives (platform admins; default: "
            "the key's own workspace, else 'default').",
        ),
    ] = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Add an endpoint. Prints its signing secret (whsec_…) once."""
    on = _admin("add", data_dir, api_url, api_key, profile)
    created = on.services.webhooks.add(
        on.actor,
        url,
        event_types=event or [],
        model_filter=model,
        description=description,
        workspace=workspace,
    )
    if as_json:
        _print({"endpoint": created.endpoint.public(), "secret": created.secret})
        return
    err.print(
        f"added {created.endpoint.id} → {url} in workspace '{created.endpoint.workspace}'; "
        "its signing secret (shown once):"
    )
    print(created.secret)


@app.command("list")
@domain_errors
def list_endpoints(
    workspace: WorkspaceFilter = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """List endpoints (never their secrets)."""
    on = _admin("list", data_dir, api_url, api_key, profile)
    found = [e.public() for e in on.services.webhooks.list(on.actor, workspace=workspace)]
    if as_json:
        _print(found)
        return
    rows = [
        [
            str(e["id"]),
            str(e["workspace"]),
            str(e["url"]),
            ", ".join(e["event_types"]) or "all",
            str(e["model_filter"] or "*"),
            "yes" if e["enabled"] else "no",
            str(e["disabled_reason"] or e["description"]),
        ]
        for e in found
    ]
    columns = ["id", "workspace", "url", "events", "model", "enabled", "note"]
    print_table(columns, rows, whole=["id", "workspace", "enabled"])


@app.command()
@domain_errors
def disable(
    endpoint_id: EndpointId,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
) -> None:
    """Stop deliveries to an endpoint (they wait until it is enabled)."""
    on = _admin("disable", data_dir, api_url, api_key, profile)
    on.services.webhooks.disable(on.actor, endpoint_id)
    err.print(f"disabled {endpoint_id}")


@app.command()
@domain_errors
def enable(
    endpoint_id: EndpointId,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
) -> None:
    """Resume deliveries to an endpoint."""
    on = _admin("enable", data_dir, api_url, api_key, profile)
    on.services.webhooks.enable(on.actor, endpoint_id)
    err.print(f"enabled {endpoint_id}")


@app.command()
@domain_errors
def remove(
    endpoint_id: EndpointId,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
) -> None:
    """Remove an endpoint and its undelivered deliveries."""
    on = _admin("remove", data_dir, api_url, api_key, profile)
    on.services.webhooks.remove(on.actor, endpoint_id)
    err.print(f"removed {endpoint_id}")


@app.command("rotate-secret")
@domain_errors
def rotate_secret(
    endpoint_id: EndpointId,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
) -> None:
    """New signing secret (printed once); the old one also signs for 24 hours."""
    on = _admin("rotate-secret", data_dir, api_url, api_key, profile)
    rotated = on.services.webhooks.rotate_secret(on.actor, endpoint_id)
    until = rotated.endpoint.secret_rotation_until
    err.print(
        f"rotated {endpoint_id}; until {until.isoformat() if until else None} "
        "deliveries carry signatures by the old and the new secret. New secret:"
    )
    print(rotated.secret)


@app.command()
@domain_errors
def test(
    endpoint_id: EndpointId,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Send a test event to an endpoint now and show the outcome."""
    on = _admin("test", data_dir, api_url, api_key, profile)
    outcome = asyncio.run(on.services.webhooks.test(on.actor, endpoint_id))
    if as_json:
        _print(outcome.public())
    elif outcome.delivered:
        print(f"delivered: {outcome.status_code} in {outcome.latency_ms} ms")
    else:
        print(f"not delivered: {outcome.error}")
    if not outcome.delivered:
        raise typer.Exit(1)


@app.command()
@domain_errors
def deliveries(
    status: Annotated[
        DeliveryStatus | None,
        typer.Option(
            "--status",
            help="Only deliveries in this state.",
        ),
    ] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Endpoint id.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, help="At most this many deliveries.")
    ] = 50,
    workspace: WorkspaceFilter = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Deliveries and their attempts, newest first."""
    on = _admin("deliveries", data_dir, api_url, api_key, profile)
    found = [
        d.public()
        for d in on.services.webhooks.deliveries(
            on.actor, status=status, endpoint_id=endpoint, workspace=workspace, limit=limit
        )
    ]
    if as_json:
        _print(found)
        return
    rows = []
    for d in found:
        last = d["last_error"] or (str(d["last_status_code"]) if d["last_status_code"] else "")
        model = f"{d['model_name']}/{d['model_version']}" if d["model_name"] else ""
        rows.append(
            [
                str(d["event_id"]),
                str(d["event_type"]),
                model,
                str(d["endpoint_id"]),
                str(d["status"]),
                str(d["attempts"]),
                str(last),
            ]
        )
    columns = ["event", "type", "model", "endpoint", "status", "attempts", "last"]
    print_table(columns, rows, whole=["event", "type", "endpoint", "status", "attempts"])


@app.command()
@domain_errors
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The event to deliver again.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Every event since: a duration back (2h) or an ISO time."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Only to this endpoint.")
    ] = None,
    workspace: WorkspaceFilter = None,
    data_dir: AdminDataDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Deliver an event, or every event since a time, again."""
    if (event_id is None) == (since is None):
        raise fail("give an EVENT_ID or --since, not both", 2)
    start = since_option(since)
    on = _admin("replay", data_dir, api_url, api_key, profile)
    queued = on.services.webhooks.replay(
        on.actor, event_id=event_id, since=start, endpoint_id=endpoint, workspace=workspace
    )
    if as_json:
        _print({"queued": queued, "event_id": event_id, "since": start, "endpoint": endpoint})
        return
    err.print(f"queued {queued} deliveries")
