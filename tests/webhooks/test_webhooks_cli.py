"""``hokusai webhooks`` on the server's store (a data directory, or PostgreSQL), with a
dispatcher on the same store: the secret is printed once and stored only encrypted, test
deliveries report their outcome, deliveries filter, replays reuse the webhook-id."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from typer.testing import CliRunner, Result

from hokusai.cli.main import app
from hokusai.db.schema import webhook_endpoints
from hokusai.keys.scopes import Scope
from hokusai.settings import Settings
from hokusai.timestamps import utcnow
from hokusai.webhooks.signing import SecretBox
from hokusai.workspaces.records import DEFAULT_PROTECTED_ALIASES, WorkspaceRecord
from hokusai.workspaces.store import insert_workspace
from tests.helpers import POSTGRES_ENV, RunningGateway, ServeGateway, free_port, postgres_database
from tests.webhooks.receiver import Answer, Receiver, always
from tests.webhooks.support import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Cli:
    home: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str, code: int = 0) -> Result:
        env = {**self.env, "HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1", "COLUMNS": "250"}
        result = self.runner.invoke(app, [*args, *self.args], env=env)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)

    def settings(self) -> Settings:
        """A gateway with its dispatcher on the same store."""
        return Settings(
            home=self.home,
            database_url=self.env.get("HOKUSAI_DATABASE_URL"),
            secret_key=self.env.get("HOKUSAI_SECRET_KEY"),
            mlflow_url=f"http://127.0.0.1:{free_port()}",  # not needed by the dispatcher
            webhook_allow_private=True,
            webhook_retry_scale=0.0001,
            dispatcher=True,
            reconcile_interval=0,
        )


@pytest.fixture(params=["data-dir", "postgres"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "data"
    home.mkdir()
    if request.param == "data-dir":
        yield Cli(home, args=["--data-dir", str(home)])
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with postgres_database() as url:
        yield Cli(
            home, env={"HOKUSAI_DATABASE_URL": url, "HOKUSAI_SECRET_KEY": secrets.token_hex(24)}
        )


@pytest.fixture
def dispatcher_on(cli: Cli, serve_gateway: ServeGateway) -> RunningGateway:
    cli("webhooks", "list")  # creates and migrates the store, and its secret
    return serve_gateway(cli.settings())


def text_of(result: Result) -> str:
    return " ".join((result.stdout + " " + result.stderr).split())


def test_webhooks_cli(cli: Cli, dispatcher_on: RunningGateway, receiver: Receiver) -> None:
    # add: the secret alone on stdout, once.
    added = cli(
        "webhooks", "add", receiver.url("/cli"), "--model", "lscor-*", "--description", "ci"
    )
    secret = added.stdout.strip()
    assert added.stdout == secret + "\n" and secret.startswith("whsec_")
    assert "shown once" in text_of(added)
    [endpoint_id] = re.findall(r"wh_[0-9a-f]{16}", added.stderr)

    broken = cli.json("webhooks", "add", receiver.url("/broken"))
    broken_id, broken_secret = broken["endpoint"]["id"], broken["secret"]
    assert broken_secret.startswith("whsec_") and broken_secret != secret

    # list: never a secret; the store holds them only encrypted.
    table = cli("webhooks", "list")
    for shown in (endpoint_id, broken_id, receiver.url("/cli"), "lscor-*", "ci"):
        assert shown in table.stdout
    listed = cli.json("webhooks", "list")
    assert [e["id"] for e in listed] == [endpoint_id, broken_id]
    assert listed[0]["model_filter"] == "lscor-*" and listed[0]["description"] == "ci"
    for output in (text_of(table), json.dumps(listed)):
        for whole in (secret, broken_secret):
            assert whole not in output and whole.removeprefix("whsec_") not in output
    engine = dispatcher_on.gateway.engine
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(webhook_endpoints))]
    box = SecretBox(dispatcher_on.gateway.settings.resolved_secret)
    for row, whole in zip(rows, (secret, broken_secret), strict=True):
        for value in row.values():
            assert whole.removeprefix("whsec_") not in str(value)
        assert box.open(row["secret_encrypted"]) == whole

    # test: reports the outcome; a receiver answering 500 makes it fail.
    delivered = cli("webhooks", "test", endpoint_id)
    assert re.fullmatch(r"delivered: 200 in \d+ ms\n", delivered.stdout)
    [request] = receiver.wait_for("/cli", 1)
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpoint_id"] == endpoint_id
    receiver.on("/broken", always(Answer(500, b"broken receiver")))
    failed = cli("webhooks", "test", broken_id, code=1)
    assert failed.stdout == "not delivered: answered 500\n"
    outcome = cli.json("webhooks", "test", broken_id, code=1)
    assert outcome["delivered"] is False and outcome["status_code"] == 500
    assert outcome["response_snippet"] == "broken receiver"

    # deliveries, by status and by endpoint.
    dead = cli.json("webhooks", "deliveries", "--status", "dead")
    assert [d["endpoint_id"] for d in dead] == [broken_id, broken_id]
    assert dead[0]["event_id"] == outcome["event_id"]
    assert all(d["attempt_log"][0]["status_code"] == 500 for d in dead)
    [ok] = cli.json("webhooks", "deliveries", "--status", "delivered")
    assert ok["endpoint_id"] == endpoint_id and ok["event_id"] == payload["id"]
    assert len(cli.json("webhooks", "deliveries", "--endpoint", broken_id)) == 2
    assert cli.json("webhooks", "deliveries", "--endpoint", endpoint_id) == [ok]
    deliveries = text_of(cli("webhooks", "deliveries"))
    assert outcome["event_id"] in deliveries and "dead" in deliveries and "delivered" in deliveries
    refusal = text_of(cli("webhooks", "deliveries", "--status", "lost", code=2))
    assert "'lost' is not one of 'pending', 'failed', 'delivered', 'dead'" in refusal

    # disable and enable.
    cli("webhooks", "disable", broken_id)
    state = {e["id"]: e for e in cli.json("webhooks", "list")}[broken_id]
    assert (state["enabled"], state["disabled_reason"]) == (False, "disabled by an admin")
    cli("webhooks", "enable", broken_id)
    state = {e["id"]: e for e in cli.json("webhooks", "list")}[broken_id]
    assert (state["enabled"], state["disabled_reason"]) == (True, None)

    # replay: the dispatcher delivers the dead letter with its webhook-id.
    receiver.on("/broken", always(Answer()))
    assert "queued 1 deliveries" in cli("webhooks", "replay", outcome["event_id"]).stderr
    replayed = receiver.wait_for("/broken", 3)[-1]
    assert replayed.webhook_id == outcome["event_id"]
    Webhook(broken_secret).verify(replayed.body, replayed.headers)
    queued = cli.json("webhooks", "replay", "--since", "1h", "--endpoint", broken_id)
    # Every event of the last hour, the test event sent to the other endpoint included.
    assert (queued["queued"], queued["endpoint"], queued["event_id"]) == (3, broken_id, None)
    again = receiver.wait_for("/broken", 6, settle=0.3)
    assert len(again) == 6
    assert {r.webhook_id for r in again[-3:]} == {d["event_id"] for d in dead} | {ok["event_id"]}
    wait_until(
        lambda: not cli.json("webhooks", "deliveries", "--status", "dead"),
        10,
        "no dead letter left",
    )
    for args in ([], [outcome["event_id"], "--since", "1h"], ["--since", "yesterday"]):
        cli("webhooks", "replay", *args, code=2)
    assert "no event 'evt_nope'" in text_of(cli("webhooks", "replay", "evt_nope", code=1))

    # rotate-secret: a new secret, once; deliveries carry both signatures.
    rotated = cli("webhooks", "rotate-secret", endpoint_id)
    new_secret = rotated.stdout.strip()
    assert rotated.stdout == new_secret + "\n" and new_secret not in (secret, broken_secret)
    cli("webhooks", "test", endpoint_id)
    signed_twice = receiver.wait_for("/cli", 2)[-1]
    assert len(signed_twice.headers["webhook-signature"].split()) == 2
    Webhook(secret).verify(signed_twice.body, signed_twice.headers)
    Webhook(new_secret).verify(signed_twice.body, signed_twice.headers)
    assert new_secret.removeprefix("whsec_") not in text_of(cli("webhooks", "list"))

    # remove, and unknown ids.
    cli("webhooks", "remove", broken_id)
    assert [e["id"] for e in cli.json("webhooks", "list")] == [endpoint_id]
    for command in ("disable", "enable", "remove", "rotate-secret", "test"):
        refused = cli("webhooks", command, "wh_0000000000000000", code=1)
        assert "no webhook endpoint 'wh_0000000000000000'" in text_of(refused)

    # Every change made from the CLI is in the audit log, by the operator, with its target.
    entries = cli.json("audit", "--limit", "1000")
    changes = [
        (e["action"], e["detail"]["target"], e["method"], e["key_id"])
        for e in reversed(entries)
        if e["action"].startswith("webhooks.")
    ]
    assert ("webhooks.add", endpoint_id, "CLI", None) in changes
    for action in ("webhooks.disable", "webhooks.enable", "webhooks.remove"):
        assert (action, broken_id, "CLI", None) in changes
    assert ("webhooks.rotate_secret", endpoint_id, "CLI", None) in changes
    assert ("webhooks.replay", outcome["event_id"], "CLI", None) in changes
    assert sum(1 for c in changes if c[0] == "webhooks.test") == 4


def test_webhooks_cli_in_workspaces(cli: Cli, dispatcher_on: RunningGateway) -> None:
    """On the store the operator works in every workspace and names one with
    --workspace; through a gateway a workspace's admin key sees only its own."""
    now = utcnow()
    with dispatcher_on.gateway.engine.begin() as conn:
        insert_workspace(
            conn, record=WorkspaceRecord("team-a", "", DEFAULT_PROTECTED_ALIASES, False, now, now)
        )
    team = cli.json("webhooks", "add", "https://a.example.com/hooks", "--workspace", "team-a")
    assert team["endpoint"]["workspace"] == "team-a"
    added = cli("webhooks", "add", "https://default.example.com/hooks")
    assert "in workspace 'default'" in text_of(added)
    everyone = cli.json("webhooks", "list")
    assert [e["workspace"] for e in everyone] == ["team-a", "default"]
    [only] = cli.json("webhooks", "list", "--workspace", "team-a")
    assert only["id"] == team["endpoint"]["id"]
    assert "team-a" in cli("webhooks", "list").stdout
    unknown = cli("webhooks", "add", "https://x.example.com/", "--workspace", "nope", code=1)
    assert "no workspace 'nope'" in text_of(unknown)

    # Through the gateway, with team-a's admin key: its own endpoint, nothing else.
    key = dispatcher_on.create_key(Scope.ADMIN, workspace="team-a")
    remote = ["--api-url", dispatcher_on.url, "--api-key", key]
    runner = CliRunner()
    listed = runner.invoke(app, ["webhooks", "list", *remote, "--json"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    assert [e["id"] for e in json.loads(listed.stdout)] == [only["id"]]
    other = runner.invoke(
        app, ["webhooks", "list", *remote, "--workspace", "default"], env={"COLUMNS": "250"}
    )
    assert other.exit_code == 4  # permission denied
    assert "needs the 'admin' role in workspace 'default'" in text_of(other)
