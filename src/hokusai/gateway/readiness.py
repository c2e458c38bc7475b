"""``/ready``: each dependency of the gateway with its status and latency.

The auth store answers a query, MLflow its health check (and runs with workspaces: every
request names one), and the webhook dispatcher keeps up (the oldest due delivery has not
waited longer than ``max_dispatch_lag``). Each check has 3 s; a failure says what failed,
never a secret or MLflow's address.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
from sqlalchemy import Engine, text

from hokusai.gateway.observability import Metrics
from hokusai.logs import redact
from hokusai.webhooks.outbox import dispatch_lag_seconds


class ReadinessChecks:
    """The checks of one gateway; ``client`` is its pool for its own calls to MLflow."""

    def __init__(
        self,
        engine: Engine,
        client: httpx.AsyncClient,
        upstream_url: str,
        metrics: Metrics,
        max_dispatch_lag: float,
    ) -> None:
        self._engine = engine
        self._client = client
        self._upstream = upstream_url.rstrip("/")
        self._metrics = metrics
        self._max_dispatch_lag = max_dispatch_lag

    async def run(self) -> tuple[int, dict[str, Any]]:
        """Each dependency with its status and latency; 503 when one fails."""
        checks = {
            "auth_store": await self._check(self._check_store),
            "mlflow": await self._check(self._check_mlflow),
            "dispatcher": await self._check(self._check_dispatch_lag),
        }
        ok = all(c["ok"] for c in checks.values())
        return (200 if ok else 503), {"status": "ok" if ok else "unavailable", "checks": checks}

    async def _check(self, probe: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            with anyio.fail_after(3):
                detail = await probe()
            ok = True
        except Exception as exc:  # a readiness probe reports every failure, whatever it is
            ok, detail = False, f"{type(exc).__name__}: {redact(str(exc))[:300]}"
        return {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 2), "detail": detail}

    async def _check_store(self) -> str:
        def probe() -> str:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return f"{self._engine.dialect.name} reachable"

        return await anyio.to_thread.run_sync(probe)

    async def _check_dispatch_lag(self) -> str:
        lag = await anyio.to_thread.run_sync(dispatch_lag_seconds, self._engine)
        self._metrics.dispatch_lag.set(lag)
        if lag > self._max_dispatch_lag:
            raise RuntimeError(
                f"the oldest due webhook delivery has waited {lag:.0f} s: is a dispatcher "
                "running (hokusai serve, or hokusai worker)?"
            )
        return f"oldest due delivery waited {lag:.1f} s"

    async def _check_mlflow(self) -> str:
        # Callers of /ready are told how MLflow is doing, never where it is (the operator's
        # `hokusai doctor --server` names the URL).
        try:
            response = await self._client.get(
                self._upstream + "/health", timeout=httpx.Timeout(2.0)
            )
        except httpx.TimeoutException:
            raise RuntimeError("MLflow did not answer its health check within 2 s") from None
        except httpx.HTTPError as exc:
            raise RuntimeError(f"MLflow is not reachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise RuntimeError(f"MLflow's health check answered {response.status_code}")
        # Every request names its key's workspace: an MLflow without workspaces refuses them
        # all (FEATURE_DISABLED), so it is not ready, and says why.
        try:
            info = await self._client.get(
                self._upstream + "/api/3.0/mlflow/server-info",
                timeout=httpx.Timeout(2.0),
            )
            enabled = info.status_code == 200 and bool(info.json().get("workspaces_enabled"))
        except (httpx.HTTPError, ValueError, AttributeError):
            enabled = False
        if not enabled:
            raise RuntimeError(
                "MLflow runs without workspaces: start it with --enable-workspaces (each "
                "team is one of its workspaces)"
            )
        return "MLflow answered its health check, with workspaces"
