"""``hokusai doctor --server``: the server's own dependencies, checked on the data directory
that ``hokusai serve`` created. Every check runs, so one failure does not hide another."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest

from tests.doctor.support import Doctor, Served
from tests.helpers import free_port

pytestmark = pytest.mark.integration

SERVER_HOPS = ["server", "auth_store", "mlflow", "artifact_store", "dispatcher", "files"]


def server_doctor(
    doctor: Doctor, served: Served, mlflow_url: str | None = None, **env: str | None
) -> tuple[int, dict[str, Any]]:
    return doctor.json(
        "--server",
        "--data-dir",
        str(served.data_dir),
        "--mlflow-url",
        mlflow_url or served.mlflow_url,
        **env,
    )


def hops(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [h["name"] for h in report["hops"]] == SERVER_HOPS, report
    return {h["name"]: h for h in report["hops"]}


def test_healthy_server_passes_every_check(doctor: Doctor, served: Served) -> None:
    code, report = server_doctor(doctor, served)

    assert code == 0, report
    assert report["ok"] is True and report["failed_hop"] is None, report
    found = hops(report)
    for hop in found.values():
        assert hop["ok"] is True and hop["fix"] is None, hop
        assert isinstance(hop["ms"], float | int) and hop["ms"] >= 0, hop
        assert hop["detail"].strip(), hop
    assert found["auth_store"]["detail"] == "sqlite reachable, schema up to date"
    assert served.mlflow_url in found["mlflow"]["detail"]
    assert "MLflow 3." in found["mlflow"]["detail"]
    assert "probe artifact" in found["artifact_store"]["detail"]
    assert "admin.key 600" in found["files"]["detail"]
    assert "secret.key 600" in found["files"]["detail"]


def test_first_start_admin_key_passes_the_client_walk(doctor: Doctor, served: Served) -> None:
    code, report = doctor.json("--write", url=served.url, key=served.admin_key())
    assert code == 0, report
    assert report["failed_hop"] is None
    assert [h["name"] for h in report["hops"]][-1] == "write"


def test_readable_admin_key_fails_files(doctor: Doctor, served: Served) -> None:
    key_file = served.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    os.chmod(key_file, 0o644)
    try:
        code, report = server_doctor(doctor, served)
    finally:
        os.chmod(key_file, 0o600)

    assert code != 0, report
    assert report["ok"] is False and report["failed_hop"] == "files", report
    found = hops(report)
    files = found["files"]
    assert files["ok"] is False
    assert str(key_file) in files["detail"] and "644" in files["detail"], files
    assert files["fix"] == f"chmod 600 {key_file}"
    assert all(found[name]["ok"] for name in SERVER_HOPS if name != "files"), report


def test_dead_mlflow_fails_mlflow(doctor: Doctor, served: Served) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code, report = server_doctor(doctor, served, mlflow_url=dead)

    assert code != 0, report
    assert report["ok"] is False and report["failed_hop"] == "mlflow", report
    found = hops(report)
    assert found["mlflow"]["ok"] is False
    assert dead in found["mlflow"]["detail"] and "does not answer" in found["mlflow"]["detail"]
    assert "HOKUSAI_MLFLOW_URL" in found["mlflow"]["fix"]
    assert found["artifact_store"]["ok"] is False  # it goes through MLflow
    assert found["auth_store"]["ok"] and found["dispatcher"]["ok"] and found["files"]["ok"]


def test_unreachable_database_fails_auth_store(doctor: Doctor, served: Served) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql+psycopg://postgres@127.0.0.1:1/hokusai"
    code, report = server_doctor(
        doctor, served, HOKUSAI_DATABASE_URL=url, HOKUSAI_SECRET_KEY="doctor-test-secret"
    )

    assert code != 0, report
    assert report["ok"] is False and report["failed_hop"] == "auth_store", report
    found = hops(report)
    store = found["auth_store"]
    assert store["ok"] is False
    assert "127.0.0.1:1" in store["detail"] and "OperationalError" in store["detail"], store
    assert "HOKUSAI_DATABASE_URL" in store["fix"]
    assert found["mlflow"]["ok"] is True
