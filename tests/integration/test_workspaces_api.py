"""Workspaces through a real gateway in front of a real MLflow: ``/api/v1/workspaces``,
keys in a workspace, ``hokusai workspaces`` through the gateway, and ``hokusai doctor``
explaining a key's refusals."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from typer.testing import CliRunner

from hokusai.audit_records import AuditRow
from hokusai.authorization import DENIED
from hokusai.cli.main import app
from hokusai.doctor.client_checks import ClientDoctor
from hokusai.keys.scopes import Scope
from tests.helpers import RunningGateway, auth


def unique() -> str:
    return "team-" + uuid.uuid4().hex[:8]


def test_workspaces_and_their_keys_through_the_api(gateway: RunningGateway) -> None:
    platform = gateway.create_key(Scope.ADMIN)  # a platform admin key
    name, other = unique(), unique()
    url = gateway.url + "/api/v1"
    for each in (name, other):
        made = httpx.post(url + "/workspaces", json={"name": each}, headers=auth(platform))
        assert made.status_code == 201, made.text
    assert made.json()["protected_aliases"] == ["production", "champion"]
    found = httpx.get(f"{gateway.gateway.settings.mlflow_url}/api/3.0/mlflow/workspaces/{name}")
    assert found.status_code == 200

    issued = httpx.post(
        url + "/keys",
        json={"name": "team admin", "scope": "admin", "workspace": name},
        headers=auth(platform),
    )
    assert issued.status_code == 201, issued.text
    team_admin = issued.json()["key"]
    assert issued.json()["record"]["workspace"] == name

    listed = httpx.get(url + "/workspaces", headers=auth(team_admin)).json()["workspaces"]
    assert [w["name"] for w in listed] == [name]
    patched = httpx.patch(
        url + f"/workspaces/{name}", json={"promotion_gate": True}, headers=auth(team_admin)
    )
    assert patched.status_code == 200 and patched.json()["promotion_gate"] is True
    refused = httpx.delete(url + f"/workspaces/{other}", headers=auth(team_admin))
    assert refused.status_code == 403
    body = refused.json()
    assert body["error_code"] == "PERMISSION_DENIED" and "platform-wide" in body["message"]
    assert body["details"]["granted_by"] == "a platform admin"
    limited = httpx.post(
        url + "/keys",
        json={"name": "ci", "scope": "write", "models": ["LSCOR*"]},
        headers=auth(team_admin),
    )
    assert limited.status_code == 201, limited.text
    assert limited.json()["record"]["models"] == ["LSCOR*"]
    assert limited.json()["record"]["workspace"] == name
    elsewhere = httpx.post(
        url + "/keys", json={"name": "x", "workspace": other}, headers=auth(team_admin)
    )
    assert elsewhere.status_code == 403 and f"'{other}'" in elsewhere.json()["message"]
    platform_key = httpx.post(
        url + "/keys", json={"name": "x", "scope": "admin", "platform": True},
        headers=auth(team_admin),
    )  # fmt: skip
    assert platform_key.status_code == 403

    audit = httpx.get(url + "/audit", headers=auth(team_admin)).json()["entries"]
    assert audit and {e["workspace"] for e in audit} == {name}

    gone = httpx.delete(url + f"/workspaces/{other}", headers=auth(platform))
    assert gone.status_code == 200, gone.text
    assert httpx.get(url + f"/workspaces/{other}", headers=auth(platform)).status_code == 404


def test_the_cli_manages_workspaces_through_the_gateway(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    env = {
        "HOKUSAI_API_URL": gateway.url,
        "HOKUSAI_API_KEY": gateway.create_key(Scope.ADMIN),
        "HOKUSAI_CONFIG_FILE": str(tmp_path / "no-profile.json"),
        "COLUMNS": "250",
    }
    name = unique()
    runner = CliRunner()
    made = runner.invoke(app, ["workspaces", "create", name, "--protect", "prod"], env=env)
    assert made.exit_code == 0, made.output
    shown = runner.invoke(app, ["workspaces", "show", name, "--json"], env=env)
    assert json.loads(shown.output)["protected_aliases"] == ["prod"]
    key = runner.invoke(
        app,
        ["keys", "create", "--name", "ci", "--workspace", name, "--scope", "promote",
         "--models", "LSCOR*", "--models", "FRAUD*", "--json"],
        env=env,
    )  # fmt: skip
    assert key.exit_code == 0, key.output
    record = json.loads(key.output)["record"]
    assert (record["workspace"], record["scope"]) == (name, "promote")
    assert record["models"] == ["LSCOR*", "FRAUD*"]
    listed = runner.invoke(app, ["keys", "list", "--workspace", name, "--json"], env=env)
    assert [k["workspace"] for k in json.loads(listed.output)] == [name]
    bad = runner.invoke(
        app, ["keys", "create", "--name", "x", "--platform", "--scope", "write"], env=env
    )
    assert bad.exit_code != 0 and "admin role" in bad.output
    deleted = runner.invoke(app, ["workspaces", "delete", name], env=env)
    assert deleted.exit_code == 0, deleted.output


def test_doctor_explains_a_refusal_by_a_protected_alias(gateway: RunningGateway) -> None:
    platform = gateway.create_key(Scope.ADMIN)
    name = unique()
    made = httpx.post(
        gateway.url + "/api/v1/workspaces", json={"name": name}, headers=auth(platform)
    )
    assert made.status_code == 201
    admin = gateway.create_key(Scope.ADMIN, workspace=name, owner="ana")
    writer = gateway.create_key(Scope.WRITE, workspace=name, owner="ci")
    writer_id = httpx.get(gateway.url + "/api/v1/whoami", headers=auth(writer)).json()["id"]
    assert admin
    # The gateway's MLflow path writes this row when check_alias refuses a request; it is
    # written here the same way (through the gateway's own audit log, with the refusal's
    # details), so this test does not depend on that path.
    path = "/api/mlflow/api/2.0/mlflow/registered-models/alias"
    gateway.gateway.audit.record(
        AuditRow(
            request_id="req-alias",
            key_id=writer_id,
            owner="ci",
            action=DENIED,
            method="POST",
            path=path,
            status=403,
            client="127.0.0.1",
            detail={
                "refused_by": "protected_alias",
                "alias": "production",
                "model": "LSCOR",
                "needed": "promote",
                "role": "write",
                "workspace": name,
                "granted_by": f"an admin of workspace '{name}' or a platform admin",
            },
            workspace=name,
        )
    )

    report = ClientDoctor(gateway.url, writer).run()
    (access,) = [h for h in report.hops if h.name == "access"]
    assert access.ok
    assert f"workspace {name}, role write, may write every model" in access.detail
    assert "protected aliases: production, champion; promotion gate off" in access.detail
    assert (
        f"POST {path} was refused: alias 'production' is protected in workspace '{name}' "
        "and needs the 'promote' role (the key has 'write'); ask ana or any platform admin."
    ) in access.detail
