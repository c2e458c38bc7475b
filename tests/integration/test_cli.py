"""``hokusai keys`` and ``hokusai audit`` on the server's store: a data directory (given by
--data-dir or HOKUSAI_HOME) or PostgreSQL (HOKUSAI_DATABASE_URL + HOKUSAI_SECRET_KEY), with
a real gateway on the same store to prove the keys the CLI issues are the ones it accepts.

Longer than most test modules (about 640 lines): every subcommand of both tools, on each
store, with the gateway that must accept what they issue.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from hokusai.admin import keys as key_admin
from hokusai.cli.main import app
from hokusai.keys.format import generate_key, parse_key
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.settings import Settings
from tests.helpers import (
    POSTGRES_ENV,
    MovedClock,
    RunningGateway,
    ServeGateway,
    accepted_until_refused,
    auth,
    keys_sharing_a_prefix,
    postgres_database,
)

pytestmark = pytest.mark.integration

GET_BY_NAME = "/api/mlflow/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
CREATE_EXPERIMENT = "/api/mlflow/api/2.0/mlflow/experiments/create"
MODES = ["data-dir", "home-env", "postgres"]


@dataclass
class Cli:
    """Runs ``hokusai`` commands against one store, the way an operator would."""

    mode: str
    home: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(self, *args: str, code: int = 0) -> Result:
        # A wide terminal keeps rich from wrapping messages and tables.
        result = self.runner.invoke(app, [*args, *self.args], env={**self.env, "COLUMNS": "250"})
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def settings(self, mlflow_url: str) -> Settings:
        """Settings of a gateway on the same store as this CLI."""
        if self.mode == "postgres":
            return Settings(
                home=self.home,
                database_url=self.env["HOKUSAI_DATABASE_URL"],
                secret_key=self.env["HOKUSAI_SECRET_KEY"],
                mlflow_url=mlflow_url,
            )
        return Settings(home=self.home, mlflow_url=mlflow_url)


@pytest.fixture(params=MODES)
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    home = tmp_path / "data"
    home.mkdir()
    if request.param == "data-dir":
        yield Cli("data-dir", home, args=["--data-dir", str(home)])
    elif request.param == "home-env":
        yield Cli("home-env", home, env={"HOKUSAI_HOME": str(home)})
    else:
        if not os.environ.get(POSTGRES_ENV):
            pytest.skip(f"{POSTGRES_ENV} is not set")
        with postgres_database() as url:
            env = {"HOKUSAI_DATABASE_URL": url, "HOKUSAI_SECRET_KEY": secrets.token_urlsafe(32)}
            yield Cli("postgres", home, env=env)


def text_of(result: Result) -> str:
    """stdout and stderr, with rich's line wrapping undone."""
    return " ".join((result.stdout + " " + result.stderr).split())


def assert_never_shows(text: str, *keys: str) -> None:
    for key in keys:
        assert key not in text
        assert key[len(parse_key(key).display_prefix) :][:12] not in text


def refused_after(running: RunningGateway, key: str) -> tuple[float, str]:
    """Poll from now until the gateway refuses ``key``: how long after now the last
    accepted request was sent, and the refusal's message."""
    accepted_for, refusal = accepted_until_refused(
        lambda: httpx.get(running.url + GET_BY_NAME, headers=auth(key)), since=time.monotonic()
    )
    assert refusal.status_code == 401, refusal.text
    return accepted_for, str(refusal.json()["message"])


def test_create_prints_only_the_key_and_the_gateway_accepts_it(
    cli: Cli, mlflow_server: MlflowProcess, serve_gateway: ServeGateway
) -> None:
    result = cli("keys", "create", "--name", "ci training", "--scope", "write")
    assert result.stdout.endswith("\n")
    [writer] = result.stdout.splitlines()
    assert parse_key(writer).env == "live"

    issued = cli.json(
        "keys",
        "create",
        "--name",
        "reader",
        "--scope",
        "read",
        "--env",
        "test",
        "--expires-in",
        "12h",
        "--owner",
        "alice",
    )
    reader, record = issued["key"], issued["record"]
    assert reader.startswith("hk_test_")
    assert record["display_prefix"] == parse_key(reader).display_prefix
    assert (record["name"], record["owner"], record["scope"], record["env"]) == (
        "reader",
        "alice",
        "read",
        "test",
    )
    assert record["state"] == "active" and record["id"].startswith("key_")
    lifetime = datetime.fromisoformat(record["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=11, minutes=55) < lifetime <= timedelta(hours=12)

    running = serve_gateway(cli.settings(mlflow_server.url))
    who = httpx.get(running.url + "/api/v1/whoami", headers=auth(writer)).json()
    assert (who["name"], who["scope"], who["state"]) == ("ci training", "write", "active")
    response = httpx.post(
        running.url + CREATE_EXPERIMENT,
        json={"name": f"cli-{uuid.uuid4().hex[:8]}"},
        headers=auth(writer),
    )
    assert response.status_code == 200, response.text

    who = httpx.get(running.url + "/api/v1/whoami", headers=auth(reader)).json()
    assert (who["id"], who["owner"], who["scope"]) == (record["id"], "alice", "read")
    assert httpx.get(running.url + GET_BY_NAME, headers=auth(reader)).status_code == 200
    response = httpx.post(
        running.url + CREATE_EXPERIMENT, json={"name": "nope"}, headers=auth(reader)
    )
    assert response.status_code == 403


def test_list_never_shows_a_whole_key(cli: Cli) -> None:
    kept = cli.json("keys", "create", "--name", "kept one", "--scope", "admin")
    gone = cli.json("keys", "create", "--name", "gone one")
    cli("keys", "revoke", gone["record"]["id"])

    table = cli("keys", "list")
    for column in ("id", "prefix", "name", "owner", "scope", "state"):
        assert column in table.stdout
    assert kept["record"]["id"] in table.stdout
    assert kept["record"]["display_prefix"] + "…" in table.stdout
    assert "kept one" in table.stdout
    assert gone["record"]["id"] not in table.stdout

    table = cli("keys", "list", "--all")
    assert gone["record"]["id"] in table.stdout and "revoked" in table.stdout

    records = cli.json("keys", "list", "--all")
    assert {r["id"]: r["state"] for r in records} == {
        kept["record"]["id"]: "active",
        gone["record"]["id"]: "revoked",
    }
    for r in records:
        assert "key" not in r and "key_hash" not in r
    assert [r["id"] for r in cli.json("keys", "list")] == [kept["record"]["id"]]

    for output in (table.stdout, table.stderr, cli("keys", "list").stdout, json.dumps(records)):
        assert_never_shows(output, kept["key"], gone["key"])


def test_revoke_by_id_display_prefix_and_whole_key(
    cli: Cli, mlflow_server: MlflowProcess, serve_gateway: ServeGateway
) -> None:
    issued = [cli.json("keys", "create", "--name", f"key {i}") for i in range(3)]
    references = [
        issued[0]["record"]["id"],
        issued[1]["record"]["display_prefix"],
        issued[2]["key"],
    ]
    running = serve_gateway(cli.settings(mlflow_server.url))
    cache_seconds = cli.settings(mlflow_server.url).key_cache_seconds
    for item in issued:  # in use, so each gateway holds it verified in its cache
        response = httpx.get(running.url + GET_BY_NAME, headers=auth(item["key"]))
        assert response.status_code == 200
    for item, reference in zip(issued, references, strict=True):
        result = cli("keys", "revoke", reference)
        assert f"revoked {item['record']['id']}" in text_of(result)
        assert_never_shows(result.stdout + result.stderr, item["key"])
        accepted_for, message = refused_after(running, item["key"])
        assert "was revoked" in message
        assert accepted_for < cache_seconds, (
            f"the gateway accepted a revoked key sent {accepted_for:.2f} s after the revocation"
        )

    states = {r["id"]: r["state"] for r in cli.json("keys", "list", "--all")}
    assert states == {item["record"]["id"]: "revoked" for item in issued}
    revoked = cli.json("keys", "revoke", issued[0]["record"]["id"])
    assert revoked["state"] == "revoked" and revoked["revoked_at"]


def test_rotate(cli: Cli, mlflow_server: MlflowProcess, serve_gateway: ServeGateway) -> None:
    old = cli.json(
        "keys",
        "create",
        "--name",
        "nightly",
        "--scope",
        "read",
        "--expires-in",
        "30d",
        "--owner",
        "batch",
    )
    running = serve_gateway(cli.settings(mlflow_server.url))
    assert httpx.get(running.url + GET_BY_NAME, headers=auth(old["key"])).status_code == 200
    result = cli("keys", "rotate", old["record"]["id"])
    [new_key] = result.stdout.splitlines()
    assert new_key != old["key"]
    assert httpx.get(running.url + GET_BY_NAME, headers=auth(new_key)).status_code == 200
    accepted_for, message = refused_after(running, old["key"])
    assert "was revoked" in message
    assert accepted_for < cli.settings(mlflow_server.url).key_cache_seconds

    # Again, by display prefix, with the record.
    again = cli.json("keys", "rotate", parse_key(new_key).display_prefix)
    assert httpx.get(running.url + GET_BY_NAME, headers=auth(again["key"])).status_code == 200
    refused_after(running, new_key)

    records = {r["id"]: r for r in cli.json("keys", "list", "--all")}
    new_id = next(i for i, r in records.items() if r["rotated_from"] == old["record"]["id"])
    assert records[old["record"]["id"]]["state"] == "revoked"
    assert records[new_id]["state"] == "revoked"
    latest = records[again["record"]["id"]]
    assert (latest["state"], latest["rotated_from"]) == ("active", new_id)
    for r in (records[new_id], latest):
        assert (r["name"], r["owner"], r["scope"]) == ("nightly", "batch", "read")
        lifetime = datetime.fromisoformat(r["expires_at"]) - datetime.fromisoformat(r["created_at"])
        assert abs(lifetime - timedelta(days=30)) < timedelta(seconds=1)

    # A revoked key is invalid input for a rotation (HTTP: 400 INVALID_PARAMETER_VALUE).
    result = cli("keys", "rotate", old["record"]["id"], code=2)
    assert "is revoked" in text_of(result) and result.stdout == ""


def test_ambiguous_and_unknown_references(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    crafted = iter(keys_sharing_a_prefix(2))
    with monkeypatch.context() as patch:
        patch.setattr(key_admin, "generate_key", lambda env="live": next(crafted))
        first = cli.json("keys", "create", "--name", "first")
        second = cli.json("keys", "create", "--name", "second")
    prefix = first["record"]["display_prefix"]
    assert second["record"]["display_prefix"] == prefix

    for command in ("revoke", "rotate"):
        # An ambiguous reference is invalid input (HTTP: 400 INVALID_PARAMETER_VALUE).
        result = cli("keys", command, prefix, code=2)
        message = text_of(result)
        assert "matches several keys" in message and "use the key id" in message
        assert first["record"]["id"] in message and second["record"]["id"] in message
        assert result.stdout == ""

    unknown = generate_key("live")
    for command in ("revoke", "rotate"):
        for reference in ("key_0000000000000000", "hk_live_ZZZZZZ", unknown):
            result = cli("keys", command, reference, code=1)
            assert "no key matches" in text_of(result)
            assert unknown not in result.stdout + result.stderr
            assert result.stdout == ""

    states = {r["id"]: r["state"] for r in cli.json("keys", "list", "--all")}
    assert states == {first["record"]["id"]: "active", second["record"]["id"]: "active"}


BAD_CREATE_OPTIONS = [
    (["--expires-in", "soon"], "'soon' is not a duration"),
    (["--expires-in", "0d"], "'0d' is not a duration"),
    (["--expires-in", "10y"], "'10y' is not a duration"),
    (["--scope", "owner"], "Invalid value for '--scope'"),
    (["--scope", "ADMIN!"], "Invalid value for '--scope'"),
    (["--env", "prod"], "'prod' is not one of 'live', 'test'"),
]


def test_bad_options_exit_2_and_create_nothing(cli: Cli) -> None:
    for options, phrase in BAD_CREATE_OPTIONS:
        result = cli("keys", "create", "--name", "x", *options, code=2)
        assert phrase in text_of(result), text_of(result)
        assert result.stdout == ""
    result = cli("keys", "create", "--scope", "read", code=2)
    assert "Missing option '--name'" in text_of(result)
    result = cli("audit", "--since", "yesterday", code=2)
    assert "--since 'yesterday' is neither a duration" in text_of(result)

    if cli.mode != "postgres":
        assert list(cli.home.iterdir()) == [], "a refused command must not touch the store"
    assert cli.json("keys", "list", "--all") == []


def test_audit(cli: Cli, mlflow_server: MlflowProcess, serve_gateway: ServeGateway) -> None:
    admin = cli("keys", "create", "--name", "ops", "--scope", "admin").stdout.strip()
    running = serve_gateway(cli.settings(mlflow_server.url))
    created = httpx.post(
        running.url + "/api/v1/keys",
        json={"name": "writer", "scope": "write"},
        headers=auth(admin, "cli-audit-create"),
    )
    assert created.status_code == 201, created.text
    writer, writer_id = created.json()["key"], created.json()["record"]["id"]
    written = httpx.post(
        running.url + CREATE_EXPERIMENT,
        json={"name": f"cli-audit-{uuid.uuid4().hex[:8]}"},
        headers=auth(writer, "cli-audit-write"),
    )
    assert written.status_code == 200, written.text

    entries = cli.json("audit")
    assert [(e["request_id"], e["action"], e["path"], e["status"]) for e in entries[:2]] == [
        ("cli-audit-write", "mlflow.write", "/api/2.0/mlflow/experiments/create", 200),
        ("cli-audit-create", "keys.create", "/api/v1/keys", 201),
    ]
    assert entries[0]["key_id"] == writer_id
    # The admin key made on the store by the CLI is audited too, under the OS user.
    (by_cli,) = entries[2:]
    assert (by_cli["action"], by_cli["method"], by_cli["path"]) == (
        "keys.create",
        "CLI",
        "hokusai keys create",
    )
    assert by_cli["key_id"] is None and by_cli["detail"]["scope"] == "admin"
    assert_never_shows(json.dumps(entries), admin, writer)

    assert [e["request_id"] for e in cli.json("audit", "--key-id", writer_id)] == [
        "cli-audit-write"
    ]
    assert len(cli.json("audit", "--since", "1h")) == 3
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cli.json("audit", "--since", future) == []
    assert [e["request_id"] for e in cli.json("audit", "--limit", "1")] == ["cli-audit-write"]

    table = cli("audit").stdout
    for text in ("keys.create", "mlflow.write", "cli-audit-create", "cli-audit-write", writer_id):
        assert text in table


def test_missing_data_dir_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    missing = tmp_path / "nowhere"
    for args, env in (
        (["keys", "list", "--data-dir", str(missing)], {}),
        (["keys", "create", "--name", "x"], {"HOKUSAI_HOME": str(missing)}),
        (["audit"], {"HOKUSAI_HOME": str(missing)}),
    ):
        result = runner.invoke(app, args, env={**env, "COLUMNS": "250"})
        assert result.exit_code == 1, result.stdout
        message = text_of(result)
        assert f"no Hokusai data directory at {missing}" in message
        assert "hokusai serve" in message and "--data-dir" in message
        assert result.stdout == ""
    assert not missing.exists()

    # Without a store named explicitly the commands work through a gateway, and need a key:
    # a ./.hokusai directory is not enough to act as the server's operator.
    (tmp_path / ".hokusai").mkdir()
    result = runner.invoke(
        app,
        ["keys", "create", "--scope", "admin", "--name", "x"],
        env={"COLUMNS": "250", "HOKUSAI_CONFIG_FILE": str(tmp_path / "no-profile.json")},
    )
    assert result.exit_code == 3
    assert "no API key to manage a gateway with" in text_of(result)
    assert list((tmp_path / ".hokusai").iterdir()) == []
    (tmp_path / ".hokusai").rmdir()

    # An external store without the shared secret.
    database = tmp_path / "store.db"
    result = runner.invoke(
        app,
        ["keys", "create", "--name", "x"],
        env={"HOKUSAI_DATABASE_URL": f"sqlite:///{database}", "COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "HOKUSAI_SECRET_KEY is not set" in text_of(result)
    assert result.stdout == ""
    assert not database.exists()
    assert list(tmp_path.iterdir()) == []


def test_the_real_command_prints_only_the_key(tmp_path: Path) -> None:
    """As a process: stdout carries the key alone, fit for $(hokusai keys create …)."""
    home = tmp_path / "data"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env["HOKUSAI_HOME"] = str(home)

    def hokusai(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hokusai.cli.main", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = hokusai("keys", "create", "--name", "shell")
    assert created.returncode == 0, created.stderr
    [key] = created.stdout.splitlines()
    assert created.stdout == key + "\n"
    parse_key(key)
    listed = hokusai("keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["display_prefix"] for r in json.loads(listed.stdout)] == [
        parse_key(key).display_prefix
    ]
    assert key not in listed.stdout
    revoked = hokusai("keys", "revoke", key)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked key_" in revoked.stdout
    assert key not in revoked.stdout + revoked.stderr


# ---- a CLI that fits a terminal and a script ----------------------------------------------------


def test_version_and_short_help() -> None:
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip().startswith("hokusai ")
    assert version.stdout.split()[1][0].isdigit(), version.stdout
    for args in (["-h"], ["keys", "-h"], ["keys", "rotate", "-h"], ["doctor", "-h"]):
        shown = runner.invoke(app, args, env={"COLUMNS": "250"})
        assert shown.exit_code == 0, (args, shown.output)
        assert "Usage:" in shown.output


def all_commands() -> Iterator[tuple[str, Any]]:
    """Every command and group under ``hokusai`` (typer's own click: duck-typed)."""

    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    yield from walk(typer.main.get_command(app), "hokusai")


def test_every_option_has_help() -> None:
    options = [
        (f"{path} {'/'.join(param.opts)}", param.help)
        for path, command in all_commands()
        for param in command.params
        if param.param_type_name == "option"
    ]
    assert len(options) > 50, "the walk found the options"
    assert [name for name, help_text in options if not help_text] == []


def test_every_listing_command_has_json() -> None:
    listings = ["keys list", "audit", "webhooks list", "webhooks deliveries", "webhooks replay"]
    commands = dict(all_commands())
    for name in listings:
        options = {o for p in commands[f"hokusai {name}"].params for o in p.opts}
        assert "--json" in options, name


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["keys", "create"], ["<live|test>", "<read|write|promote|admin>"]),
        (["webhooks", "deliveries"], ["<pending|failed|delivered|dead>"]),
    ],
)
def test_choices_show_as_choices(args: list[str], choices: list[str]) -> None:
    shown = CliRunner().invoke(app, [*args, "-h"], env={"COLUMNS": "250"})
    for choice in choices:
        assert choice in shown.output, shown.output


FORCED_TERMINAL = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize(
    ("env", "columns"),
    [({}, "40"), (FORCED_TERMINAL, "60")],
    ids=["no terminal", "narrow terminal"],
)
def test_tables_never_cut_ids_or_prefixes(
    cli: Cli, env: dict[str, str], columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cli.mode != "data-dir":
        pytest.skip("the table is the same on every store")
    created = [
        cli.json("keys", "create", "--name", f"a long name for key number {n}", "--owner", "ops")
        for n in range(3)
    ]
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    result = cli.runner.invoke(app, ["keys", "list", *cli.args], env={**env, "COLUMNS": columns})
    assert result.exit_code == 0, result.output
    output = _ANSI.sub("", result.stdout)
    for issued in created:
        record = issued["record"]
        assert record["id"] in output, output
        assert record["display_prefix"] + "…" in output, output
    if env:
        assert max(len(line) for line in output.splitlines()) <= int(columns), output
    else:  # a pipe gets every row on one line
        rows = [line for line in output.splitlines() if "key_" in line]
        assert len(rows) == 3 and all("a long name for key number" in r for r in rows), output


def test_rotate_takes_expires_in(cli: Cli) -> None:
    old = cli.json("keys", "create", "--name", "nightly", "--expires-in", "30d")
    new = cli.json("keys", "rotate", old["record"]["id"], "--expires-in", "2h")
    lifetime = datetime.fromisoformat(new["record"]["expires_at"]) - datetime.fromisoformat(
        new["record"]["created_at"]
    )
    assert abs(lifetime - timedelta(hours=2)) < timedelta(seconds=1)
    refused = cli("keys", "rotate", new["record"]["id"], "--expires-in", "soon", code=2)
    assert "'soon' is not a duration" in text_of(refused)
    assert cli.json("keys", "list")[0]["id"] == new["record"]["id"], "nothing rotated"


def test_rotating_an_expired_key_gives_a_fresh_lifetime(cli: Cli, clock: MovedClock) -> None:
    old = cli.json("keys", "create", "--name", "short", "--expires-in", "1s")
    clock.advance(timedelta(seconds=2))
    assert cli.json("keys", "list")[0]["state"] == "expired"

    new = cli.json("keys", "rotate", old["record"]["id"])
    assert new["record"]["state"] == "active"
    expires = datetime.fromisoformat(new["record"]["expires_at"])
    assert expires - clock() > timedelta(minutes=59), "not born expired"
    [listed] = cli.json("keys", "list")
    assert (listed["id"], listed["state"]) == (new["record"]["id"], "active")


def test_http_rotate_takes_expires_in(
    cli: Cli, clock: MovedClock, serve_gateway: ServeGateway
) -> None:
    if cli.mode != "data-dir":
        pytest.skip("the HTTP API is the same on every store")
    admin = cli("keys", "create", "--name", "ops", "--scope", "admin").stdout.strip()
    target = cli.json("keys", "create", "--name", "ci", "--expires-in", "1s")
    nowhere = "http://127.0.0.1:1"  # the key API does not need MLflow
    running = serve_gateway(cli.settings(nowhere))
    clock.advance(timedelta(seconds=2))
    url = f"{running.url}/api/v1/keys/{target['record']['id']}/rotate"
    rotated = httpx.post(url, json={"expires_in": "3d"}, headers=auth(admin))
    assert rotated.status_code == 200, rotated.text
    record = rotated.json()["record"]
    lifetime = datetime.fromisoformat(record["expires_at"]) - datetime.fromisoformat(
        record["created_at"]
    )
    assert abs(lifetime - timedelta(days=3)) < timedelta(seconds=1)
    assert record["state"] == "active"
    again = f"{running.url}/api/v1/keys/{record['id']}/rotate"
    refused = httpx.post(again, json={"expires_in": "soon"}, headers=auth(admin))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'soon' is not a duration" in refused.json()["message"]
    plain = httpx.post(again, headers=auth(admin))  # no body: the inherited lifetime
    assert plain.status_code == 200, plain.text


# ---- hokusai login --------------------------------------------------------------------------


def test_login_honours_the_environment(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_gateway: ServeGateway
) -> None:
    if cli.mode != "data-dir":
        pytest.skip("login talks to a gateway, whatever its store")
    key = cli("keys", "create", "--name", "laptop", "--scope", "read").stdout.strip()
    running = serve_gateway(cli.settings("http://127.0.0.1:1"))
    config = tmp_path / "config.json"
    result = CliRunner().invoke(
        app,
        ["login"],
        env={
            "HOKUSAI_API_URL": running.url,
            "HOKUSAI_API_KEY": key,
            "HOKUSAI_CONFIG_FILE": str(config),
            "COLUMNS": "250",
        },
    )
    assert result.exit_code == 0, result.output
    assert f"logged in to {running.url}" in result.stderr
    saved = json.loads(config.read_text())["profiles"]["default"]
    assert saved == {"api_url": running.url, "api_key": key}
    assert key not in result.output


def test_login_without_a_terminal_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["login"], env={"HOKUSAI_CONFIG_FILE": str(tmp_path / "c.json"), "COLUMNS": "250"}
    )
    assert result.exit_code == 2, result.output
    assert "Aborted" not in result.output
    assert "--api-key" in result.stderr and "HOKUSAI_API_KEY" in result.stderr
    assert not (tmp_path / "c.json").exists()


def test_advice_without_a_key_names_the_option(tmp_path: Path) -> None:
    environment = {"HOKUSAI_CONFIG_FILE": str(tmp_path / "none.json"), "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["whoami"], env=environment)
    assert result.exit_code == 2, result.output
    assert "--api-key" in result.stderr and "HOKUSAI_API_KEY" in result.stderr
    assert "api_key=" not in result.output
