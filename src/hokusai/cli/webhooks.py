"""``hokusai webhooks``: endpoints, deliveries and replays, straight on the store."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal, get_args

import typer

from hokusai.cli.context import DataDir, err, fail, open_store, parse_since
from hokusai.cli.tables import print_table
from hokusai.webhooks import outbox
from hokusai.webhooks.dispatcher import send_test
from hokusai.webhooks.endpoints import EndpointError, EndpointNotFound, Endpoints
from hokusai.webhooks.signing import SecretBox
from hokusai.webhooks.worker import dispatcher_settings

app = typer.Typer(
    help="Webhook endpoints and deliveries (on the server's store).", no_args_is_help=True
)
# The outbox's states, spelled out so that --help lists them.
DeliveryStatus = Literal["pending", "failed", "delivered", "dead"]
assert set(get_args(DeliveryStatus)) == set(outbox.DELIVERY_STATUSES)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
EndpointId = Annotated[str, typer.Argument(help="Endpoint id (wh_…).")]


def _endpoints(data_dir: Any) -> Endpoints:
    engine, settings = open_store(data_dir)
    return Endpoints(
        engine, SecretBox(settings.resolved_secret), allow_private=settings.webhook_allow_private
    )


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


@app.command()
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
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Add an endpoint. Prints its signing secret (whsec_…) once."""
    endpoints = _endpoints(data_dir)
    try:
        created = endpoints.add(
            url, event_types=event or [], model_filter=model, description=description
        )
    except EndpointError as exc:
        raise fail(str(exc), 2) from None
    if as_json:
        _print({"endpoint": created.endpoint, "secret": created.secret})
        return
    err.print(f"added {created.endpoint['id']} → {url}; its signing secret (shown once):")
    print(created.secret)


@app.command("list")
def list_endpoints(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """List endpoints (never their secrets)."""
    found = _endpoints(data_dir).list()
    if as_json:
        _print(found)
        return
    rows = [
        [
            str(e["id"]),
            str(e["url"]),
            ", ".join(e["event_types"]) or "all",
            str(e["model_filter"] or "*"),
            "yes" if e["enabled"] else "no",
            str(e["disabled_reason"] or e["description"]),
        ]
        for e in found
    ]
    columns = ["id", "url", "events", "model", "enabled", "note"]
    print_table(columns, rows, whole=["id", "enabled"])


def _change(data_dir: Any, endpoint_id: str, action: str) -> Any:
    endpoints = _endpoints(data_dir)
    try:
        if action == "disable":
            return endpoints.set_enabled(endpoint_id, False)
        if action == "enable":
            return endpoints.set_enabled(endpoint_id, True)
        if action == "remove":
            endpoints.remove(endpoint_id)
            return {"removed": endpoint_id}
        rotated = endpoints.rotate_secret(endpoint_id)
        return {"endpoint": rotated.endpoint, "secret": rotated.secret}
    except EndpointNotFound as exc:
        raise fail(str(exc)) from None


@app.command()
def disable(endpoint_id: EndpointId, data_dir: DataDir = None) -> None:
    """Stop deliveries to an endpoint (they wait until it is enabled)."""
    _change(data_dir, endpoint_id, "disable")
    err.print(f"disabled {endpoint_id}")


@app.command()
def enable(endpoint_id: EndpointId, data_dir: DataDir = None) -> None:
    """Resume deliveries to an endpoint."""
    _change(data_dir, endpoint_id, "enable")
    err.print(f"enabled {endpoint_id}")


@app.command()
def remove(endpoint_id: EndpointId, data_dir: DataDir = None) -> None:
    """Remove an endpoint and its undelivered deliveries."""
    _change(data_dir, endpoint_id, "remove")
    err.print(f"removed {endpoint_id}")


@app.command("rotate-secret")
def rotate_secret(endpoint_id: EndpointId, data_dir: DataDir = None) -> None:
    """New signing secret (printed once); the old one also signs for 24 hours."""
    rotated = _change(data_dir, endpoint_id, "rotate")
    err.print(
        f"rotated {endpoint_id}; until {rotated['endpoint']['secret_rotation_until']} "
        "deliveries carry signatures by the old and the new secret. New secret:"
    )
    print(rotated["secret"])


@app.command()
def test(endpoint_id: EndpointId, data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Send a test event to an endpoint now and show the outcome."""
    engine, settings = open_store(data_dir)
    try:
        Endpoints(
            engine,
            SecretBox(settings.resolved_secret),
            allow_private=settings.webhook_allow_private,
        ).get(endpoint_id)
    except EndpointNotFound as exc:
        raise fail(str(exc)) from None
    outcome = asyncio.run(
        send_test(
            engine, SecretBox(settings.resolved_secret), dispatcher_settings(settings), endpoint_id
        )
    )
    if as_json:
        _print(outcome)
    elif outcome["delivered"]:
        print(f"delivered: {outcome['status_code']} in {outcome['latency_ms']} ms")
    else:
        print(f"not delivered: {outcome['error']}")
    if not outcome["delivered"]:
        raise typer.Exit(1)


@app.command()
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
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Deliveries and their attempts, newest first."""
    engine, _ = open_store(data_dir)
    found = outbox.list_deliveries(engine, status=status, endpoint_id=endpoint, limit=limit)
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
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The event to deliver again.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Every event since: a duration back (2h) or an ISO time."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Only to this endpoint.")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Deliver an event, or every event since a time, again."""
    if (event_id is None) == (since is None):
        raise fail("give an EVENT_ID or --since, not both", 2)
    start = parse_since(since) if since is not None else None
    engine, _ = open_store(data_dir)
    try:
        queued = outbox.replay(engine, event_id=event_id, since=start, endpoint_id=endpoint)
    except LookupError as exc:
        raise fail(str(exc)) from None
    if as_json:
        _print({"queued": queued, "event_id": event_id, "since": start, "endpoint": endpoint})
        return
    err.print(f"queued {queued} deliveries")
