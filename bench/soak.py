"""Soak test: the platform under mixed traffic for a bounded time, on loopback only.

It starts its own MLflow (SQLite, served artifacts) and ``hokusai serve --mlflow-url`` in
front of it (the same servers as ``bench_gateway.py``, in a temporary directory), then
sends a mix of traffic through the gateway with a fixed number of requests in flight:

- reads: ``experiments/get-by-name``, ``registered-models/get``
- searches: ``runs/search``, ``registered-models/search``
- writes: a run created, a batch of metrics logged, the run finished
- registrations: a run and a new version of one registered model
- artifacts: 64 KiB uploaded and downloaded again, compared byte for byte
- bad keys: a mistyped key every few seconds (expected: 401), kept below the failed-auth
  limit so it never slows the valid traffic

Every ``--interval`` seconds it prints the requests, unexpected answers ("errors"), p50/p99
latency and the RSS of the gateway and of MLflow; at the end it writes a JSON summary
(bench/results/soak.json). Bounded by ``--minutes`` and ``--max-requests``, each request by
a timeout. Usage: ``.venv/bin/python bench/soak.py --minutes 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _common import BENCH_DIR, CpuAccount, percentile, record_start, tree_rss_mib
from _servers import Server, running, start_gateway, start_mlflow

RESULTS_FILE = BENCH_DIR / "results" / "soak.json"
API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
EXPERIMENT = "hokusai-soak"
MODEL = "soak-model"
ARTIFACT_BYTES = 64 * 1024
# Below the default failed-auth limit (30 a minute per address), so the bad keys are
# refused without slowing the valid traffic from the same address.
BAD_KEY_EVERY_SECONDS = 3.0
# Share of each kind of operation in the mix (bad keys are sent on a timer of their own).
MIX = {"read": 35, "search": 25, "write": 15, "artifact": 15, "register": 10}


@dataclass
class Interval:
    """What happened in one reporting interval."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def observe(self, kind: str, seconds: float) -> None:
        self.latencies[kind].append(seconds)
        self.requests += 1


def latency_ms(seconds: list[float], p: float) -> float:
    """A percentile of latencies in milliseconds; 0 for an interval without any (the
    record stays valid JSON, which has no NaN)."""
    return round(percentile(seconds, p) * 1000, 1) if seconds else 0.0


class Traffic:
    """The operations, each a few requests through the gateway, each checked."""

    def __init__(self, client: httpx.AsyncClient, bad_client: httpx.AsyncClient) -> None:
        self.client = client
        self.bad_client = bad_client
        self.experiment_id = ""
        self.interval = Interval()
        self.budget = 0
        self.error_samples: list[str] = []
        self.registered = 0

    async def request(self, kind: str, method: str, url: str, expect: int, **kw: Any) -> Any:
        """One request; an answer other than ``expect`` (or none) is counted as an error."""
        self.budget -= 1
        client = self.bad_client if kind == "bad_key" else self.client
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self._error(kind, f"{kind} {method} {url}: {type(exc).__name__}")
            return None
        self.interval.observe(kind, time.perf_counter() - started)
        if response.status_code != expect:
            self._error(
                kind, f"{kind} {method} {url}: {response.status_code} {response.text[:200]}"
            )
            return None
        if kind == "bad_key":
            body = response.json()
            if not {"error_code", "message", "request_id"} <= body.keys():
                self._error(kind, f"bad key answer not in the error format: {body}")
        return response

    def _error(self, kind: str, detail: str) -> None:
        self.interval.errors[kind] += 1
        if len(self.error_samples) < 50:
            self.error_samples.append(detail)

    async def setup(self) -> None:
        created = await self.client.post(f"{API}/experiments/create", json={"name": EXPERIMENT})
        created.raise_for_status()
        self.experiment_id = created.json()["experiment_id"]
        (
            await self.client.post(f"{API}/registered-models/create", json={"name": MODEL})
        ).raise_for_status()

    async def read(self) -> None:
        await self.request(
            "read", "GET", f"{API}/experiments/get-by-name", 200,
            params={"experiment_name": EXPERIMENT},
        )  # fmt: skip
        await self.request(
            "read", "GET", f"{API}/registered-models/get", 200, params={"name": MODEL}
        )

    async def search(self) -> None:
        await self.request(
            "search", "POST", f"{API}/runs/search", 200,
            json={"experiment_ids": [self.experiment_id], "max_results": 20},
        )  # fmt: skip
        await self.request(
            "search", "GET", f"{API}/registered-models/search", 200, params={"max_results": 20}
        )

    async def _new_run(self, kind: str) -> dict[str, Any] | None:
        response = await self.request(
            kind, "POST", f"{API}/runs/create", 200,
            json={"experiment_id": self.experiment_id, "start_time": int(time.time() * 1000)},
        )  # fmt: skip
        return None if response is None else response.json()["run"]["info"]  # type: ignore[no-any-return]

    async def write(self) -> None:
        run = await self._new_run("write")
        if run is None:
            return
        now = int(time.time() * 1000)
        metrics = [
            {"key": f"m{i}", "value": random.random(), "timestamp": now, "step": 0}
            for i in range(5)
        ]
        await self.request(
            "write", "POST", f"{API}/runs/log-batch", 200,
            json={"run_id": run["run_id"], "metrics": metrics},
        )  # fmt: skip
        await self.request(
            "write", "POST", f"{API}/runs/update", 200,
            json={"run_id": run["run_id"], "status": "FINISHED", "end_time": now},
        )  # fmt: skip

    async def register(self) -> None:
        run = await self._new_run("register")
        if run is None:
            return
        response = await self.request(
            "register", "POST", f"{API}/model-versions/create", 200,
            json={"name": MODEL, "source": run["artifact_uri"] + "/model", "run_id": run["run_id"]},
        )  # fmt: skip
        if response is not None:
            self.registered += 1

    async def artifact(self) -> None:
        payload = secrets.token_bytes(ARTIFACT_BYTES)
        url = f"{ARTIFACTS}/soak/{secrets.token_hex(8)}.bin"
        if await self.request("artifact", "PUT", url, 200, content=payload) is None:
            return
        response = await self.request("artifact", "GET", url, 200)
        if response is not None and response.content != payload:
            self._error("artifact", f"artifact {url} came back different")

    async def bad_key(self) -> None:
        await self.request("bad_key", "GET", f"{API}/registered-models/search", 401)


async def count_versions(client: httpx.AsyncClient) -> int:
    count, token = 0, ""
    while True:
        params = {"filter": f"name='{MODEL}'", "max_results": 1000}
        if token:
            params["page_token"] = token
        page = (await client.get(f"{API}/model-versions/search", params=params)).json()
        count += len(page.get("model_versions", []))
        token = page.get("next_page_token", "")
        if not token:
            return count


async def run_soak(
    args: argparse.Namespace, gateway_url: str, key: str, pids: dict[str, int]
) -> dict[str, Any]:
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    timeout = httpx.Timeout(args.request_timeout)
    # A well-formed key with a wrong checksum: refused before any store lookup.
    bad = key[:-1] + ("0" if key[-1] != "0" else "1")
    async with (
        httpx.AsyncClient(
            base_url=gateway_url,
            headers={"Authorization": f"Bearer {key}"},
            limits=limits,
            timeout=timeout,
        ) as client,
        httpx.AsyncClient(
            base_url=gateway_url, headers={"Authorization": f"Bearer {bad}"}, timeout=timeout
        ) as bad_client,
    ):
        traffic = Traffic(client, bad_client)
        traffic.budget = args.max_requests
        await traffic.setup()
        operations = [getattr(traffic, name) for name in MIX]
        weights = list(MIX.values())
        started = time.monotonic()
        deadline = started + args.minutes * 60
        intervals: list[dict[str, Any]] = []
        totals: dict[str, list[float]] = defaultdict(list)
        total_errors: Counter[str] = Counter()

        def running() -> bool:
            return time.monotonic() < deadline and traffic.budget > 0

        async def worker() -> None:
            while running():
                await random.choices(operations, weights)[0]()

        async def bad_keys() -> None:
            while running():
                await traffic.bad_key()
                await asyncio.sleep(BAD_KEY_EVERY_SECONDS)

        async def reporter() -> None:
            while running():
                await asyncio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
                if running():  # the last, partial interval is reported once traffic stops
                    report()

        def report() -> None:
            interval, traffic.interval = traffic.interval, Interval()
            everything = [s for values in interval.latencies.values() for s in values]
            for kind, values in interval.latencies.items():
                totals[kind].extend(values)
            total_errors.update(interval.errors)
            row = {
                "t_seconds": round(time.monotonic() - started),
                "requests": interval.requests,
                "errors": sum(interval.errors.values()),
                "errors_by_kind": dict(interval.errors),
                "p50_ms": latency_ms(everything, 50),
                "p99_ms": latency_ms(everything, 99),
                "gateway_rss_mib": tree_rss_mib(pids["gateway"]),
                "mlflow_rss_mib": tree_rss_mib(pids["mlflow"]),
            }
            intervals.append(row)
            print(
                f"t={row['t_seconds']:>5}s  requests={row['requests']:>6}  "
                f"errors={row['errors']:>3}  "
                f"p50={row['p50_ms']:>7.1f} ms  p99={row['p99_ms']:>7.1f} ms  "
                f"gateway RSS={row['gateway_rss_mib']:>6.1f} MiB  "
                f"MLflow RSS={row['mlflow_rss_mib']:>6.1f} MiB",
                flush=True,
            )

        with CpuAccount(list(pids.values())) as cpu:
            tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
            tasks += [asyncio.create_task(bad_keys()), asyncio.create_task(reporter())]
            # In-flight requests have their own timeout; past that, everything is cancelled.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*tasks), args.minutes * 60 + args.request_timeout + 10
                )
            if traffic.interval.requests:
                report()
        elapsed = time.monotonic() - started

        # Every registration answered 200 must be a version in MLflow, and no other.
        versions_in_mlflow = await count_versions(client)
        if versions_in_mlflow != traffic.registered:
            traffic._error(
                "register",
                f"{traffic.registered} registrations answered 200, "
                f"MLflow has {versions_in_mlflow} versions",
            )
            total_errors["register"] += 1
    everything = [s for values in totals.values() for s in values]
    requests = len(everything) + sum(total_errors.values())
    return {
        "elapsed_seconds": round(elapsed, 1),
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1) if elapsed else 0.0,
        "errors": sum(total_errors.values()),
        "errors_by_kind": dict(total_errors),
        "error_samples": traffic.error_samples,
        "p50_ms": latency_ms(everything, 50),
        "p99_ms": latency_ms(everything, 99),
        "by_kind": {
            kind: {
                "requests": len(values),
                "p50_ms": latency_ms(values, 50),
                "p99_ms": latency_ms(values, 99),
            }
            for kind, values in sorted(totals.items())
        },
        "registrations_ok": traffic.registered,
        "model_versions_in_mlflow": versions_in_mlflow,
        "intervals": intervals,
        "rss_mib": {
            name: {
                "first": intervals[0][f"{name}_rss_mib"] if intervals else None,
                "last": intervals[-1][f"{name}_rss_mib"] if intervals else None,
                "max": max((row[f"{name}_rss_mib"] for row in intervals), default=None),
            }
            for name in ("gateway", "mlflow")
        },
        "cpu": cpu.result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between reports")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="do not write results/soak.json")
    args = parser.parse_args()
    if not 0 < args.minutes <= 240:
        parser.error("--minutes must be between 0 and 240")

    record = record_start()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="hokusai-soak-") as tmp, running(servers):
        root = Path(tmp)
        mlflow = start_mlflow(root / "mlflow", args.mlflow_workers, basic_auth=False)
        servers.append(mlflow)
        mlflow.wait_ready("/health")
        gateway = start_gateway(root / "gateway", mlflow.url)
        servers.append(gateway)
        gateway.wait_ready("/health")
        key = gateway.headers["Authorization"].removeprefix("Bearer ")
        pids = {"gateway": gateway.pid, "mlflow": mlflow.pid}
        print(
            f"soak: {args.minutes:g} min, {args.concurrency} in flight, gateway {gateway.url}, "
            f"report every {args.interval:g} s",
            flush=True,
        )
        summary = asyncio.run(run_soak(args, gateway.url, key, pids))

    result = {
        **record,
        "settings": {
            "minutes": args.minutes,
            "concurrency": args.concurrency,
            "max_requests": args.max_requests,
            "mlflow_workers": args.mlflow_workers,
            "mix_percent": MIX,
            "artifact_bytes": ARTIFACT_BYTES,
            "bad_key_every_seconds": BAD_KEY_EVERY_SECONDS,
        },
        **summary,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "intervals"}, indent=2))
    if not args.no_write:
        RESULTS_FILE.parent.mkdir(exist_ok=True)
        RESULTS_FILE.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {RESULTS_FILE}")
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
