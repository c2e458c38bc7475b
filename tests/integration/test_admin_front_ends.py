"""One admin operation, three front-ends: the HTTP API, the CLI on the server's own store,
and the CLI through the gateway. Each must make the same store change and write the same
audit row (who, what, to what), because each calls the same service.

Against a real gateway (real MLflow behind it) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from hokusai.admin.actor import Actor, Origin
from hokusai.cli.main import app
from hokusai.db.schema import api_keys, audit_log, webhook_endpoints
from hokusai.keys.scopes import Scope
from tests.helpers import RunningGateway

FRONT_ENDS = ["http", "local-cli", "remote-cli"]
HOOK_URL = "https://hooks.example.com/registry"


@dataclass
class FrontEnd:
    """Runs one admin operation the way a person on that front-end would."""

    kind: str
    running: RunningGateway
    admin_key: str
    tmp_path: Path

    def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = httpx.request(
            method,
            self.running.url + "/api/v1" + path,
            json=body,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )
        assert answer.status_code < 300, answer.text
        return answer.json()

    def cli(self, *args: str, code: int = 0, key: str | None = None) -> Result:
        settings = self.running.gateway.settings
        env = {"HOKUSAI_CONFIG_FILE": str(self.tmp_path / "no-profile.json"), "COLUMNS": "250"}
        if self.kind == "local-cli":
            env |= {
                "HOKUSAI_DATABASE_URL": str(settings.database_url),
                "HOKUSAI_SECRET_KEY": str(settings.secret_key),
            }
        else:
            env |= {"HOKUSAI_API_URL": self.running.url, "HOKUSAI_API_KEY": key or self.admin_key}
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    @property
    def actor(self) -> tuple[str | None, str]:
        """(key_id, owner) the audit row must name."""
        if self.kind == "local-cli":
            return None, getpass.getuser()
        record = self.running.gateway.services.keys.get(operator(), self.admin_key)
        return record.id, record.owner


def operator() -> Actor:
    return Actor.operator(Origin.command("tests"))


@pytest.fixture(params=FRONT_ENDS)
def front(request: pytest.FixtureRequest, gateway: RunningGateway, tmp_path: Path) -> FrontEnd:
    return FrontEnd(request.param, gateway, gateway.create_key(Scope.ADMIN), tmp_path)


def last_audit(front: FrontEnd, action: str) -> dict[str, Any]:
    with front.running.gateway.engine.connect() as conn:
        row = conn.execute(
            select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id.desc())
        ).first()
    assert row is not None, f"no audit row for {action}"
    found = dict(row._mapping)
    found["detail"] = json.loads(found["detail"])
    return found


def key_row(front: FrontEnd, key_id: str) -> dict[str, Any]:
    with front.running.gateway.engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    assert row is not None
    return dict(row._mapping)


def endpoint_rows(front: FrontEnd) -> list[dict[str, Any]]:
    with front.running.gateway.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(webhook_endpoints))]


# ---- the operations: each runs on the front-end and returns the target it changed -------


def create_key(front: FrontEnd) -> str:
    if front.kind == "http":
        answer = front.http("POST", "/keys", {"name": "ci", "scope": "read"})
    else:
        answer = front.cli_json("keys", "create", "--name", "ci", "--scope", "read")
    row = key_row(front, answer["record"]["id"])
    assert (row["name"], row["scope"], row["revoked_at"]) == ("ci", "read", None)
    return str(answer["record"]["id"])


def revoke_key(front: FrontEnd) -> str:
    target = front.running.gateway.services.keys.create(operator(), name="leaving").record.id
    if front.kind == "http":
        front.http("POST", f"/keys/{target}/revoke")
    else:
        front.cli("keys", "revoke", target)
    assert key_row(front, target)["revoked_at"] is not None
    return target


def rotate_key(front: FrontEnd) -> str:
    target = front.running.gateway.services.keys.create(operator(), name="aging").record.id
    if front.kind == "http":
        answer = front.http("POST", f"/keys/{target}/rotate")
    else:
        answer = front.cli_json("keys", "rotate", target)
    assert key_row(front, target)["revoked_at"] is not None
    replacement = key_row(front, answer["record"]["id"])
    assert (replacement["rotated_from"], replacement["name"]) == (target, "aging")
    return target


def add_webhook(front: FrontEnd) -> str:
    if front.kind == "http":
        answer = front.http("POST", "/webhooks", {"url": HOOK_URL})
    else:
        answer = front.cli_json("webhooks", "add", HOOK_URL)
    assert answer["secret"].startswith("whsec_")
    [row] = endpoint_rows(front)
    assert (row["id"], row["url"], bool(row["enabled"])) == (
        answer["endpoint"]["id"],
        HOOK_URL,
        True,
    )
    return str(row["id"])


def disable_webhook(front: FrontEnd) -> str:
    target = front.running.gateway.services.webhooks.add(operator(), HOOK_URL).endpoint.id
    if front.kind == "http":
        front.http("POST", f"/webhooks/{target}/disable")
    else:
        front.cli("webhooks", "disable", target)
    [row] = endpoint_rows(front)
    assert (row["id"], bool(row["enabled"])) == (target, False)
    return target


OPERATIONS: dict[str, Callable[[FrontEnd], str]] = {
    "keys.create": create_key,
    "keys.revoke": revoke_key,
    "keys.rotate": rotate_key,
    "webhooks.add": add_webhook,
    "webhooks.disable": disable_webhook,
}


@pytest.mark.parametrize("action", list(OPERATIONS))
def test_every_front_end_makes_the_same_change_and_audit_row(front: FrontEnd, action: str) -> None:
    target = OPERATIONS[action](front)
    entry = last_audit(front, action)
    assert (entry["key_id"], entry["owner"]) == front.actor
    assert (entry["action"], entry["detail"]["target"]) == (action, target)
    if front.kind == "local-cli":
        assert (entry["method"], entry["status"]) == ("CLI", 0)
        assert entry["path"].startswith("hokusai ")
    else:  # the remote CLI's row is the HTTP API's row: it made that request
        assert entry["method"] in ("POST", "DELETE") and entry["path"].startswith("/api/v1/")
        assert entry["status"] in (200, 201)


def test_a_key_without_admin_scope_gets_the_http_refusal_and_a_nonzero_exit(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    writer = gateway.create_key(Scope.WRITE)
    front = FrontEnd("remote-cli", gateway, writer, tmp_path)
    over_http = httpx.post(
        gateway.url + "/api/v1/keys",
        json={"name": "x"},
        headers={"Authorization": f"Bearer {writer}"},
    )
    assert over_http.status_code == 403
    result = front.cli("keys", "create", "--name", "x", code=4)
    message = " ".join(result.stderr.split())
    assert message == "error: " + over_http.json()["message"]
    assert "needs the 'admin' role in workspace 'default'" in message
    assert gateway.gateway.services.keys.list(operator()) == [
        k for k in gateway.gateway.services.keys.list(operator()) if k.name != "x"
    ]
    detail = last_audit(front, "denied")["detail"]
    assert detail == {"wanted": "keys.create", **over_http.json()["details"]}
    assert (detail["needed"], detail["role"], detail["refused_by"]) == ("admin", "write", "role")


def test_without_a_store_or_a_key_admin_commands_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory that holds .hokusai is no longer enough to act as its operator."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".hokusai").mkdir()
    for name in ("HOKUSAI_HOME", "HOKUSAI_DATABASE_URL", "HOKUSAI_API_KEY", "HOKUSAI_API_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {"HOKUSAI_CONFIG_FILE": str(tmp_path / "none.json"), "COLUMNS": "250"}
    for args in (["keys", "create", "--scope", "admin", "--name", "x"], ["webhooks", "list"]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 3, result.stderr
        text = " ".join(result.stderr.split())
        assert "no API key to manage a gateway with" in text and "--data-dir" in text
    assert list((tmp_path / ".hokusai").iterdir()) == []
