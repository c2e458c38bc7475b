"""The server's own dependencies: the running server, auth store, MLflow, artifact store,
dispatcher, files.

Every check runs (they are independent), so an operator sees the whole state at once. The
server checked is the one that runs: ``hokusai serve`` leaves its real gateway and MLflow
URLs in ``<home>/runtime.json``; only without it are the settings' defaults used.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from hokusai.db.engine import make_engine
from hokusai.db.migrate import pending_revisions
from hokusai.doctor.no_answer import no_answer
from hokusai.doctor.report import HopFailed, Report
from hokusai.server.runtime_file import RUNTIME_FILE, Runtime
from hokusai.settings import ADMIN_KEY_FILE, SECRET_FILE, Settings
from hokusai.webhooks.outbox import dispatch_lag_seconds

TIMEOUT = 5.0
MLFLOW_FIX = (
    "Is `hokusai serve` running (it supervises MLflow)? With an external MLflow, check "
    "HOKUSAI_MLFLOW_URL."
)


class ServerDoctor:
    def __init__(
        self,
        settings: Settings,
        runtime: Runtime | None = None,
        *,
        mlflow_source: str = "the default",
        timeout: float = TIMEOUT,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.mlflow_source = mlflow_source
        self.timeout = timeout

    def run(self) -> Report:
        report = Report()
        for name, check in [
            ("server", self.check_server),
            ("auth_store", self.check_store),
            ("mlflow", self.check_mlflow),
            ("artifact_store", self.check_artifacts),
            ("dispatcher", self.check_dispatcher),
            ("files", self.check_files),
        ]:
            report.run(name, check)
        return report

    def check_store(self) -> str:
        url = self.settings.resolved_database_url
        engine = (
            make_engine(url, pool_pre_ping=False)
            if not url.startswith("sqlite")
            else make_engine(url)
        )
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            pending = pending_revisions(engine)
        except Exception as exc:
            raise HopFailed(
                f"cannot reach the auth store ({engine.url.render_as_string()}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                "Check HOKUSAI_DATABASE_URL and that the database is up.",
            ) from None
        finally:
            engine.dispose()
        if pending:
            raise HopFailed(
                f"the auth store lacks migrations {', '.join(pending)}",
                "Start `hokusai serve` once (it migrates), or run the migrations.",
            )
        return f"{engine.dialect.name} reachable, schema up to date"

    def check_server(self) -> str:
        """The ``hokusai serve`` of this data directory: running, and its gateway answers."""
        path = self.settings.home / RUNTIME_FILE
        runtime = self.runtime
        if runtime is None:
            return (
                f"no {path}: no `hokusai serve` runs on this data directory; checking the "
                f"configured MLflow {self.settings.mlflow_url}"
            )
        if not runtime.running:
            raise HopFailed(
                f"{path} names hokusai serve pid {runtime.pid}, which no longer runs (it was "
                "killed)",
                "Start `hokusai serve` again; it replaces the stale file.",
            )
        try:
            response = httpx.get(runtime.gateway_url + "/health", timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise no_answer(
                exc,
                "the gateway",
                runtime.gateway_url,
                self.timeout,
                f"Check the log of hokusai serve (pid {runtime.pid}).",
            ) from None
        if response.status_code != 200:
            raise HopFailed(
                f"the gateway at {runtime.gateway_url}/health answered {response.status_code}",
                f"Check the log of hokusai serve (pid {runtime.pid}).",
            )
        mlflow_port = f", MLflow child on port {runtime.mlflow_port}" if runtime.mlflow_port else ""
        return (
            f"hokusai serve pid {runtime.pid}: gateway {runtime.gateway_url} (port "
            f"{runtime.port}){mlflow_port}, MLflow {runtime.mlflow_url}"
        )

    def _mlflow_get(self, path: str) -> httpx.Response:
        url = self.settings.mlflow_url.rstrip("/")
        try:
            return httpx.get(url + path, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise no_answer(
                exc, "MLflow", f"{url} (from {self.mlflow_source})", self.timeout, MLFLOW_FIX
            ) from None

    def check_mlflow(self) -> str:
        url = self.settings.mlflow_url.rstrip("/")
        response = self._mlflow_get("/health")
        if response.status_code != 200:
            raise HopFailed(
                f"MLflow at {url}/health answered {response.status_code}",
                "Check MLflow's log (DATA_DIR/logs/mlflow.log under hokusai serve).",
            )
        version = self._mlflow_get("/version").text.strip()
        return f"MLflow {version} at {url} (from {self.mlflow_source})"

    def check_artifacts(self) -> str:
        url = self.settings.mlflow_url.rstrip("/")
        probe = f"/api/2.0/mlflow-artifacts/artifacts/hokusai-doctor/{uuid.uuid4().hex}.txt"
        try:
            put = httpx.put(url + probe, content=b"hokusai doctor probe", timeout=self.timeout)
            delete = httpx.delete(url + probe, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise no_answer(
                exc, "MLflow's artifact service", url, self.timeout, "See the mlflow check above."
            ) from None
        if put.status_code != 200:
            raise HopFailed(
                f"writing a probe artifact failed: {put.status_code} {put.text[:200]}",
                "Check that MLflow's --artifacts-destination exists and is writable "
                "(directory permissions, or the S3 bucket and credentials).",
            )
        if delete.status_code != 200:
            raise HopFailed(
                f"deleting the probe artifact failed: {delete.status_code}",
                "Check the artifact store's permissions.",
            )
        return "wrote and deleted a probe artifact through MLflow"

    def check_dispatcher(self) -> str:
        engine = make_engine(self.settings.resolved_database_url)
        try:
            lag = dispatch_lag_seconds(engine)
        except Exception as exc:
            raise HopFailed(
                f"cannot read the outbox: {type(exc).__name__}", "See the auth_store check."
            ) from None
        finally:
            engine.dispose()
        if lag > self.settings.max_dispatch_lag:
            raise HopFailed(
                f"the oldest due webhook delivery has waited {lag:.0f} s",
                "Start a dispatcher: `hokusai serve` runs one, or `hokusai worker`.",
            )
        return f"oldest due delivery waited {lag:.1f} s"

    def check_files(self) -> str:
        home = self.settings.home
        problems, seen = [], []
        for name in (ADMIN_KEY_FILE, SECRET_FILE):
            path = Path(home) / name
            if not path.exists():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            seen.append(f"{name} {mode:o}")
            if mode & 0o077:
                problems.append(f"{path} has mode {mode:o}, readable by others")
        if problems:
            raise HopFailed(
                "; ".join(problems), f"chmod 600 {' '.join(p.split()[0] for p in problems)}"
            )
        return ", ".join(seen) if seen else f"no key files in {home} (external secret)"
