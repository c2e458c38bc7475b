"""``hokusai doctor`` names the hop where a request dies. Each failure is made to happen for
real; the doctor must name the hop and say how to fix it, the gateway must count it in
/metrics, and the stock MLflow client must show a readable error for the same situation.

Longer than most test modules (about 450 lines): one real failure per hop.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hokusai.db.engine import normalise_url
from hokusai.keys.format import generate_key
from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.doctor.support import (
    HOOKS,
    Doctor,
    SpareMlflow,
    assert_failed,
    metric,
    stock_client_error,
)
from tests.helpers import (
    POSTGRES_ENV,
    MakeGateway,
    MovedClock,
    RunningGateway,
    free_port,
    postgres_database,
    sqlite_gateway,
)
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.integration

CLIENT_HOPS = ["config", "dns", "connect", "health", "auth", "access", "proxy_read"]
REQUESTS = "hokusai_requests_total"
AUTH_FAILURES = "hokusai_auth_failures_total"
UPSTREAM_ERRORS = "hokusai_upstream_errors_total"


@pytest.fixture(scope="module")
def hop_gateway(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """One gateway for the module. Loopback webhook receivers are allowed; the limit on
    failed authentications per address is out of the way, since every test here fails to
    authenticate from the same address on purpose."""
    with sqlite_gateway(
        tmp_path_factory.mktemp("hops"),
        mlflow_server.url,
        webhook_allow_private=True,
        auth_failures_per_minute=100_000,
    ) as running:
        yield running


def add_webhook(gateway: RunningGateway, admin_key: str, url: str) -> str:
    response = httpx.post(
        gateway.url + "/api/v1/webhooks",
        json={"url": url, "description": "doctor test receiver"},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["endpoint"]["id"])


def mistyped(key: str) -> str:
    """The key with one character of its checksum changed."""
    return key[:-1] + ("a" if key[-1] != "a" else "b")


# ---- the passing case -----------------------------------------------------------------------


def test_healthy_gateway_passes_every_hop(
    doctor: Doctor,
    hop_gateway: RunningGateway,
    receiver_factory: Callable[[int], Receiver],
) -> None:
    admin = hop_gateway.create_key(Scope.ADMIN)
    receiver = receiver_factory(204)
    endpoint = add_webhook(hop_gateway, admin, receiver.url(HOOKS))

    code, report = doctor.json("--write", "--webhook", endpoint, url=hop_gateway.url, key=admin)

    assert code == 0, report
    assert report["ok"] is True and report["failed_hop"] is None, report
    assert [h["name"] for h in report["hops"]] == [*CLIENT_HOPS, "write", "webhooks"]
    for hop in report["hops"]:
        assert hop["ok"] is True and hop["fix"] is None, hop
        assert isinstance(hop["ms"], float | int) and hop["ms"] >= 0, hop
        assert isinstance(hop["detail"], str) and hop["detail"].strip(), hop
    details = {h["name"]: h["detail"] for h in report["hops"]}
    assert admin not in str(report), "the report never shows the whole key"
    assert "checksum valid" in details["config"] and admin[:14] in details["config"]
    assert "127.0.0.1" in details["dns"]
    assert "Hokusai gateway" in details["health"]
    record = hop_gateway.gateway.keys.resolve(admin)
    assert record.id in details["auth"] and "role admin" in details["auth"]
    assert "platform admin key: role admin in every workspace" in details["access"]
    assert "no recent refusals" in details["access"]
    assert "scratch run" in details["write"]
    assert "delivered" in details["webhooks"] and "204" in details["webhooks"]
    # The test event really reached the receiver, signed.
    [delivered] = receiver.requests(HOOKS)
    assert delivered.headers["webhook-signature"].startswith("v1,")


# ---- health: a server that is not the gateway, or the wrong prefix ------------------------


def test_health_hop_names_mlflow_itself(
    doctor: Doctor, hop_gateway: RunningGateway, mlflow_server: MlflowProcess
) -> None:
    key = hop_gateway.create_key(Scope.READ)
    code, report = doctor.json(url=mlflow_server.url, key=key)
    failed = assert_failed(code, report, "health", mlflow_server.url, "not a Hokusai gateway")
    assert "HOKUSAI_API_URL" in failed["fix"] and "/api/mlflow" in failed["fix"]


def test_health_hop_names_the_right_url_for_a_wrong_prefix(
    doctor: Doctor, hop_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = hop_gateway.create_key(Scope.READ)
    wrong = hop_gateway.url + "/mlflow"
    not_found = metric(hop_gateway.url, REQUESTS, route_class="other", status="404")

    code, report = doctor.json(url=wrong, key=key)

    failed = assert_failed(code, report, "health", wrong, "not its base URL")
    assert f"HOKUSAI_API_URL={hop_gateway.url} " in failed["fix"]
    assert f"{hop_gateway.url}/api/mlflow" in failed["fix"]
    assert metric(hop_gateway.url, REQUESTS, route_class="other", status="404") == not_found + 1

    shown = stock_client_error(monkeypatch, wrong, key)
    assert "ENDPOINT_NOT_FOUND" in shown
    assert f"MLFLOW_TRACKING_URI={hop_gateway.url}/api/mlflow" in shown


# ---- config and auth: the key ---------------------------------------------------------------


def test_config_hop_without_a_key(
    doctor: Doctor, hop_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, report = doctor.json(url=hop_gateway.url)
    failed = assert_failed(code, report, "config", "no API key")
    assert "HOKUSAI_API_KEY" in failed["fix"]
    assert len(report["hops"]) == 1, "nothing is sent without a key"

    missing = metric(hop_gateway.url, AUTH_FAILURES, reason="missing")
    shown = stock_client_error(monkeypatch, hop_gateway.tracking_uri, None)
    assert "UNAUTHENTICATED" in shown and "MLFLOW_TRACKING_TOKEN" in shown
    assert metric(hop_gateway.url, AUTH_FAILURES, reason="missing") == missing + 1


def test_config_hop_with_a_malformed_key(
    doctor: Doctor, hop_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = mistyped(hop_gateway.create_key(Scope.READ))
    code, report = doctor.json(url=hop_gateway.url, key=key)
    failed = assert_failed(code, report, "config", "malformed", "checksum", "environment")
    assert key not in failed["detail"]
    assert "Copy the key again" in failed["fix"]

    malformed = metric(hop_gateway.url, AUTH_FAILURES, reason="malformed")
    shown = stock_client_error(monkeypatch, hop_gateway.tracking_uri, key)
    assert "UNAUTHENTICATED" in shown and "checksum" in shown
    assert metric(hop_gateway.url, AUTH_FAILURES, reason="malformed") == malformed + 1


def unknown_key(gateway: RunningGateway, clock: MovedClock) -> str:
    """A well-formed key this gateway never issued."""
    return generate_key("live")


def revoked_key(gateway: RunningGateway, clock: MovedClock) -> str:
    key = gateway.create_key(Scope.READ)
    gateway.gateway.keys.revoke(key)
    return key


def expired_key(gateway: RunningGateway, clock: MovedClock) -> str:
    issued = gateway.gateway.keys.create(
        name="short-lived", owner="tests", scope=Scope.READ, expires_in=timedelta(seconds=1)
    )
    clock.advance(timedelta(seconds=2))
    return issued.key


@pytest.mark.parametrize(
    ("reason", "make_key", "phrases", "fix_phrase"),
    [
        ("unknown", unknown_key, ["Unknown API key", "never issued"], "never issued the key"),
        ("revoked", revoked_key, ["was revoked at"], "hokusai keys rotate"),
        ("expired", expired_key, ["expired at"], "hokusai keys create"),
    ],
    ids=["unknown", "revoked", "expired"],
)
def test_auth_hop_says_which_key_problem(
    doctor: Doctor,
    hop_gateway: RunningGateway,
    monkeypatch: pytest.MonkeyPatch,
    reason: str,
    clock: MovedClock,
    make_key: Callable[[RunningGateway, MovedClock], str],
    phrases: list[str],
    fix_phrase: str,
) -> None:
    key = make_key(hop_gateway, clock)
    before = metric(hop_gateway.url, AUTH_FAILURES, reason=reason)

    code, report = doctor.json(url=hop_gateway.url, key=key)

    failed = assert_failed(code, report, "auth", "UNAUTHENTICATED", *phrases)
    assert fix_phrase in failed["fix"]
    assert key not in str(report)
    assert metric(hop_gateway.url, AUTH_FAILURES, reason=reason) == before + 1

    shown = stock_client_error(monkeypatch, hop_gateway.tracking_uri, key)
    assert "UNAUTHENTICATED" in shown and phrases[0] in shown
    assert metric(hop_gateway.url, AUTH_FAILURES, reason=reason) >= before + 2


# ---- write: a read-only key ---------------------------------------------------------------


def test_write_hop_names_the_write_role(
    doctor: Doctor, hop_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = hop_gateway.create_key(Scope.READ)
    role_failures = metric(hop_gateway.url, AUTH_FAILURES, reason="role")
    forbidden = metric(hop_gateway.url, REQUESTS, route_class="tracking", status="403")

    code, report = doctor.json("--write", url=hop_gateway.url, key=key)

    failed = assert_failed(code, report, "write", "PERMISSION_DENIED", "'write' role")
    assert "'write' role" in failed["fix"]
    assert [h["name"] for h in report["hops"]] == [*CLIENT_HOPS, "write"]
    assert metric(hop_gateway.url, AUTH_FAILURES, reason="role") == role_failures + 1
    assert metric(hop_gateway.url, REQUESTS, route_class="tracking", status="403") == forbidden + 1

    shown = stock_client_error(
        monkeypatch,
        hop_gateway.tracking_uri,
        key,
        lambda client: client.create_experiment(f"doctor-denied-{uuid.uuid4().hex[:8]}"),
    )
    assert "PERMISSION_DENIED" in shown and "'write' role" in shown and "has 'read'" in shown


# ---- connect and dns: no gateway at all ---------------------------------------------------


def test_connect_hop_when_nothing_listens(doctor: Doctor) -> None:
    port = free_port()
    # Without a key the walk would stop at config: give it a well-formed one.
    code, report = doctor.json(url=f"http://127.0.0.1:{port}", key=generate_key("live"))
    failed = assert_failed(code, report, "connect", f"127.0.0.1:{port}", "connection refused")
    assert "hokusai serve" in failed["fix"]


def test_dns_hop_for_an_unresolvable_host(doctor: Doctor) -> None:
    host = f"hokusai-{uuid.uuid4().hex[:8]}.invalid"
    code, report = doctor.json(url=f"http://{host}:8080", key=generate_key("live"))
    failed = assert_failed(code, report, "dns", f"cannot resolve {host}")
    assert host in failed["fix"]


# ---- webhooks: a receiver that answers 500 ------------------------------------------------


def test_webhooks_hop_when_the_receiver_fails(
    doctor: Doctor,
    hop_gateway: RunningGateway,
    receiver_factory: Callable[[int], Receiver],
) -> None:
    admin = hop_gateway.create_key(Scope.ADMIN)
    receiver = receiver_factory(500)
    endpoint = add_webhook(hop_gateway, admin, receiver.url(HOOKS))
    tests_sent = metric(hop_gateway.url, REQUESTS, route_class="admin", method="POST", status="200")

    code, report = doctor.json("--webhook", endpoint, url=hop_gateway.url, key=admin)

    failed = assert_failed(
        code, report, "webhooks", endpoint, "not delivered", "answered 500", "receiver is broken"
    )
    assert f"--endpoint {endpoint}" in failed["fix"]
    assert [h["name"] for h in report["hops"]] == [*CLIENT_HOPS, "webhooks"]
    assert len(receiver.requests(HOOKS)) == 1, "the test event was really sent"
    after = metric(hop_gateway.url, REQUESTS, route_class="admin", method="POST", status="200")
    assert after == tests_sent + 1


# ---- terminal output ------------------------------------------------------------------------

_HOP_LINE = re.compile(r"^(?P<mark>[✓✗]) (?P<name>[a-z_]+)\s+(?P<ms>\d+\.\d) ms  (?P<detail>\S.*)$")


def hop_lines(output: str) -> list[dict[str, Any]]:
    return [m.groupdict() for line in output.splitlines() if (m := _HOP_LINE.match(line))]


@pytest.fixture
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may force colour on: the output is not a terminal.
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("plain_terminal")
def test_terminal_output_of_a_failing_walk(doctor: Doctor, hop_gateway: RunningGateway) -> None:
    key = hop_gateway.create_key(Scope.READ)
    result = doctor.run("--write", url=hop_gateway.url, key=key)

    assert result.exit_code == 1, result.stdout
    output = result.stdout
    assert "\x1b[" not in output, "no ANSI codes when stdout is not a terminal"
    assert key not in output
    lines = hop_lines(output)
    assert [line["name"] for line in lines] == [*CLIENT_HOPS, "write"], output
    assert [line["mark"] for line in lines] == ["✓"] * len(CLIENT_HOPS) + ["✗"], output
    assert "'write' role" in lines[-1]["detail"]
    text_lines = output.splitlines()
    write_at = next(i for i, line in enumerate(text_lines) if line.startswith("✗ write"))
    fix = text_lines[write_at + 1]
    assert fix.lstrip().startswith("fix: ") and "'write' role" in fix, output
    assert sum("fix:" in line for line in text_lines) == 1, output
    assert text_lines[-1] == "failed at 'write'", output


@pytest.mark.usefixtures("plain_terminal")
def test_terminal_output_of_a_passing_walk(doctor: Doctor, hop_gateway: RunningGateway) -> None:
    key = hop_gateway.create_key(Scope.WRITE)
    result = doctor.run("--write", url=hop_gateway.url, key=key)

    assert result.exit_code == 0, result.stdout
    assert "\x1b[" not in result.stdout
    lines = hop_lines(result.stdout)
    assert [line["name"] for line in lines] == [*CLIENT_HOPS, "write"], result.stdout
    assert all(line["mark"] == "✓" for line in lines)
    assert "fix:" not in result.stdout
    assert result.stdout.splitlines()[-1] == "all hops passed"


# ---- auth: the auth store is unreachable --------------------------------------------------


@pytest.mark.postgres
def test_auth_hop_when_the_auth_store_is_gone(
    doctor: Doctor,
    mlflow_server: MlflowProcess,
    make_gateway: MakeGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with postgres_database() as url:
        running = make_gateway(url, mlflow_server.url)
        key = running.create_key(Scope.READ)
        assert httpx.get(running.url + "/ready", timeout=10).status_code == 200
        drop_database(url)
        unavailable = metric(running.url, REQUESTS, route_class="admin", status="503")

        code, report = doctor.json(url=running.url, key=key)

        failed = assert_failed(
            code, report, "auth", "TEMPORARILY_UNAVAILABLE", "cannot reach its auth store"
        )
        assert "hokusai doctor --server" in failed["fix"]
        after = metric(running.url, REQUESTS, route_class="admin", status="503")
        assert after == unavailable + 1

        ready = httpx.get(running.url + "/ready", timeout=10)
        assert ready.status_code == 503, ready.text
        checks = ready.json()["checks"]
        assert checks["auth_store"]["ok"] is False, checks
        assert checks["auth_store"]["detail"], checks
        assert checks["mlflow"]["ok"] is True, checks

        tracking = metric(running.url, REQUESTS, route_class="tracking", status="503")
        shown = stock_client_error(monkeypatch, running.tracking_uri, key)
        assert "503" in shown
        after = metric(running.url, REQUESTS, route_class="tracking", status="503")
        assert after >= tracking + 1


def drop_database(url: str) -> None:
    """Make the database unreachable for good: end its sessions and drop it."""
    name = make_url(url).database
    admin = create_engine(normalise_url(os.environ[POSTGRES_ENV]), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# ---- proxy_read: MLflow stopped -----------------------------------------------------------


def test_proxy_read_hop_when_mlflow_is_stopped(
    doctor: Doctor,
    spare_mlflow: SpareMlflow,
    make_gateway: MakeGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow = spare_mlflow.ready()
    running = make_gateway(f"sqlite:///{tmp_path / 'hokusai.db'}", mlflow.url)
    key = running.create_key(Scope.READ)
    code, report = doctor.json(url=running.url, key=key)
    assert code == 0, report  # the same walk passes while MLflow runs

    spare_mlflow.stop()
    refused = metric(running.url, UPSTREAM_ERRORS, kind="refused")
    unavailable = metric(running.url, REQUESTS, route_class="tracking", status="503")

    code, report = doctor.json(url=running.url, key=key)

    failed = assert_failed(code, report, "proxy_read", "TEMPORARILY_UNAVAILABLE", "not reachable")
    assert "/ready" in failed["fix"]
    # Callers are not told where MLflow runs; the operator's log and doctor --server are.
    assert mlflow.url not in json.dumps(failed)
    assert metric(running.url, UPSTREAM_ERRORS, kind="refused") == refused + 1
    after = metric(running.url, REQUESTS, route_class="tracking", status="503")
    assert after == unavailable + 1

    ready = httpx.get(running.url + "/ready", timeout=10)
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert checks["mlflow"]["ok"] is False and checks["mlflow"]["detail"], checks
    assert checks["auth_store"]["ok"] is True, checks

    shown = stock_client_error(monkeypatch, running.tracking_uri, key)
    assert "503" in shown
    assert metric(running.url, UPSTREAM_ERRORS, kind="refused") >= refused + 2
