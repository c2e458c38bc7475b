"""Benchmark of the Hokusai gateway against MLflow on its own and MLflow's basic-auth app.

What one run measures, on loopback only (127.0.0.1), with a load generator in a process
of its own (this script started again with ``--client``, an asyncio + httpx loop):

1. Registry reads, ``GET /api/2.0/mlflow/experiments/get-by-name`` and
   ``GET /api/2.0/mlflow/registered-models/search`` (proxied), and the model resolution
   reads the gateway answers from its cache, ``GET /api/2.0/mlflow/registered-models/alias``
   and ``GET /api/2.0/mlflow/model-versions/get`` (``CACHED_ENDPOINTS``), sent
   (a) ``direct`` to MLflow,
   (b) through the ``gateway``: ``hokusai serve --mlflow-url`` in front of that same MLflow,
       with a real API key from its store and everything on (authentication, route policy,
       rate limit, audit, metrics and its JSON request log, which goes to a file),
   (c) to ``basic-auth``: ``mlflow server --app-name basic-auth``, MLflow's own
       authentication (HTTP basic auth as its admin user), with its own databases.
   Each MLflow runs the same number of workers (``--mlflow-workers``, default 1). For each
   endpoint and target: throughput at a fixed concurrency (``--concurrency``) and the
   latency at that load, then latency unloaded (one request at a time). Every run is
   bounded by a request count and a time limit; the targets are measured in interleaved
   rounds after a warm-up, and the rounds' median throughput is reported. The CPU time
   the gateway, MLflow and the load generator spend per request is read from /proc.
2. A large artifact (``--artifact-mib``, default 1024) uploaded (``PUT``) and downloaded
   (``GET``) on ``/api/2.0/mlflow-artifacts/artifacts/<path>``, direct and through the
   gateway, streamed from and to files: MB/s (10^6 bytes per second) each way, and the
   gateway process's peak RSS growth while it passes the data (VmRSS sampled, VmHWM).

The machine's CPU is accounted over each part: what other processes (or the hypervisor)
took is recorded with the figures, since it disturbs them on a shared machine.
It prints a table, PASS/MISS for each target, and writes bench/results/latest.json.
Usage: ``make bench`` or ``.venv/bin/python bench/bench_gateway.py [--artifact-mib 64]``.

Longer than most modules (about 740 lines) because a run is one script: the load
generator (this file again, with ``--client``), the read and artifact measurements, and
the report with its targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from _common import (
    BENCH_DIR,
    MIB,
    CpuAccount,
    RssSampler,
    cpu_seconds,
    file_sha256,
    load_average,
    percentile,
    random_file,
    record_start,
    run_child,
)
from _servers import (
    ARTIFACT_ENDPOINT,
    ENDPOINTS,
    REGISTERED_MODELS,
    SHARED_LIMIT_RATE,
    Server,
    postgres_database,
    running,
    seed,
    start_gateway,
    start_mlflow,
)

RESULTS_FILE = BENCH_DIR / "results" / "latest.json"

# Served from the gateway's resolution cache (gateway/resolution_cache.py): goals of their own.
CACHED_ENDPOINTS = {"alias", "version"}
# Gateways whose per-key limit is shared by replicas (``--shared-limiters``), measured as
# further targets next to ``gateway`` (in-memory limit, SQLite auth store).
SHARED_LIMITERS = {"postgres": "gateway-pg-limit", "redis": "gateway-redis-limit"}

CPU_COLUMNS = ("gateway", "mlflow", "client")

# Targets (the product's goals), checked and printed as PASS/MISS.
GOAL_VS_DIRECT = 0.95
GOAL_VS_BASIC_AUTH = 15.0
GOAL_ADDED_MEDIAN_MS = 1.0
GOAL_CACHED_VS_DIRECT = 10.0
GOAL_CACHED_ADDED_MEDIAN_MS = 0.0  # below direct
GOAL_ARTIFACT_VS_DIRECT = 0.8
GOAL_RSS_GROWTH_MIB = 64.0


# ---- the load generator (runs in its own process) ---------------------------------------


def client_main() -> None:
    """``--client``: read one job as JSON on stdin, run it, print its result as JSON."""
    job = json.loads(sys.stdin.read())
    if job["kind"] == "load":
        try:
            import uvloop

            result = uvloop.run(_load(job))
        except ImportError:
            result = asyncio.run(_load(job))
    elif job["kind"] == "upload":
        result = _upload(job)
    else:
        result = _download(job)
    print(json.dumps(result))


async def _load(job: dict[str, Any]) -> dict[str, Any]:
    """GET with ``concurrency`` requests in flight until ``max_requests`` have been sent or
    ``duration`` seconds have passed. With several targets, each worker takes them in turn
    (direct, gateway, direct, …): both see the same moments of the machine. Every latency,
    status and error is counted per target."""
    targets = job["targets"]
    concurrency = job["concurrency"]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(job["timeout"])
    results = [{"latencies": [], "statuses": {}, "errors": {}} for _ in targets]
    budget = job["max_requests"]

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        cpu_started = time.process_time()
        deadline = started + job["duration"]

        async def worker() -> None:
            nonlocal budget
            turn = 0
            while budget > 0 and time.perf_counter() < deadline:
                budget -= 1
                index, turn = turn, (turn + 1) % len(targets)
                result = results[index]
                sent = time.perf_counter()
                try:
                    response = await client.get(
                        targets[index]["url"], headers=targets[index]["headers"]
                    )
                except httpx.HTTPError as exc:
                    name = type(exc).__name__
                    result["errors"][name] = result["errors"].get(name, 0) + 1
                    continue
                result["latencies"].append(time.perf_counter() - sent)
                status = str(response.status_code)
                result["statuses"][status] = result["statuses"].get(status, 0) + 1

        # The time limit holds even if a server stops answering: in-flight requests get
        # their own timeout on top, and then everything is cancelled.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(worker() for _ in range(concurrency))),
                job["duration"] + job["timeout"] + 5,
            )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return {"elapsed": elapsed, "cpu_seconds": cpu, "targets": results}


def _upload(job: dict[str, Any]) -> dict[str, Any]:
    """PUT a file, streamed from disk (httpx reads it in chunks; Content-Length is set)."""
    size = os.path.getsize(job["file"])
    with (
        httpx.Client(headers=job["headers"], timeout=httpx.Timeout(job["timeout"])) as client,
        open(job["file"], "rb") as source,
    ):
        started = time.perf_counter()
        response = client.put(job["url"], content=source)
        elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "bytes": size, "status": response.status_code}


def _download(job: dict[str, Any]) -> dict[str, Any]:
    """GET a file, streamed to disk in chunks."""
    received = 0
    with (
        httpx.Client(headers=job["headers"], timeout=httpx.Timeout(job["timeout"])) as client,
        open(job["file"], "wb") as sink,
    ):
        started = time.perf_counter()
        with client.stream("GET", job["url"]) as response:
            for chunk in response.iter_raw(MIB):
                sink.write(chunk)
                received += len(chunk)
        elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "bytes": received, "status": response.status_code}


def run_client(job: dict[str, Any], limit_seconds: float) -> dict[str, Any]:
    """Run one job in a new load generator process."""
    return run_child(__file__, "--client", job, limit_seconds)


# ---- measurements ---------------------------------------------------------------------------


def load_run(
    servers: list[Server],
    path: str,
    *,
    concurrency: int,
    max_requests: int,
    duration: float,
    watch: dict[str, int],
) -> list[dict[str, Any]]:
    """One bounded load run (on several servers in turn, if given several), one result per
    server; the CPU time of the watched processes is read around it."""
    job = {
        "kind": "load",
        "targets": [{"url": server.url + path, "headers": server.headers} for server in servers],
        "concurrency": concurrency,
        "max_requests": max_requests,
        "duration": duration,
        "timeout": 60.0,
    }
    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    result = run_client(job, limit_seconds=duration + 120)
    after = {name: cpu_seconds(pid) for name, pid in watch.items()}
    before["client"], after["client"] = 0.0, result["cpu_seconds"]
    runs = []
    for run in result["targets"]:
        ok = run["statuses"].get("200", 0)
        run["ok"] = ok
        run["rps"] = ok / result["elapsed"] if result["elapsed"] else 0.0
        run["p50_ms"] = percentile(run["latencies"], 50) * 1000
        run["cpu_ms_per_request"] = {
            name: round((after[name] - before[name]) * 1000 / ok, 3) if ok else None
            for name in after
        }
        runs.append(run)
    return runs


def bench_reads(
    servers: dict[str, Server], watch: dict[str, dict[str, int]], args: argparse.Namespace
) -> dict[str, Any]:
    """Registry reads, per endpoint, in rounds. Each round: throughput and latency at
    ``args.concurrency`` for each target in turn, then latency at concurrency 1 with direct
    and gateway requests alternating in one run, then basic-auth at concurrency 1."""
    results: dict[str, Any] = {}
    targets = list(servers)  # direct, gateway, basic-auth, then any shared-limit gateways
    gateways = [t for t in targets if t.startswith("gateway")]
    for endpoint, path in ENDPOINTS.items():
        print(f"\nreads: {endpoint}", flush=True)
        for target in targets:  # warm-up: connections, caches, lazy imports
            load_run(
                [servers[target]],
                path,
                concurrency=args.concurrency,
                max_requests=args.warmup_requests,
                duration=args.warmup_seconds,
                watch={},
            )
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            t: {"loaded": [], "unloaded": []} for t in targets
        }
        bounds = {"max_requests": args.max_requests, "duration": args.duration}
        for round_no in range(1, args.rounds + 1):
            for target in targets:
                [run] = load_run(
                    [servers[target]],
                    path,
                    concurrency=args.concurrency,
                    watch=watch[target],
                    **bounds,
                )
                runs[target]["loaded"].append(run)
                report_run(round_no, f"c={args.concurrency}", target, run)
            alternating = ["direct", *gateways]
            # The added latency is a fraction of a millisecond on top of MLflow's own
            # several (search: about 30 ms, with jitter of a few): its median needs many
            # more requests than the throughput runs make, or one noisy round decides it.
            pair = load_run(
                [servers[t] for t in alternating],
                path,
                concurrency=1,
                watch={},
                max_requests=args.latency_requests * len(alternating),
                duration=args.latency_seconds,
            )
            [basic] = load_run([servers["basic-auth"]], path, concurrency=1, watch={}, **bounds)
            for target, run in zip([*alternating, "basic-auth"], [*pair, basic], strict=True):
                runs[target]["unloaded"].append(run)
                report_run(round_no, "c=1", target, run)
        results[endpoint] = {
            "targets": {t: summarize_reads(runs[t]) for t in targets},
            "paired": paired_comparisons(runs),
        }
    return results


def report_run(round_no: int, mode: str, target: str, run: dict[str, Any]) -> None:
    failed = run["errors"] or set(run["statuses"]) - {"200"}
    note = f"  NOT 200: {run['statuses']} {run['errors']}" if failed else ""
    print(
        f"  round {round_no} {mode:5} {target:10} {run['ok']:6d} ok {run['rps']:8.1f} req/s"
        f"  p50 {run['p50_ms']:8.2f} ms{note}",
        flush=True,
    )


def summarize_reads(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per target: req/s (median of the rounds), latency percentiles (all rounds pooled),
    CPU per request (median of the rounds, loaded runs)."""
    summary: dict[str, Any] = {}
    for mode, mode_runs in runs.items():
        latencies = [x for run in mode_runs for x in run["latencies"]]
        summary[mode] = {
            "rps": statistics.median(run["rps"] for run in mode_runs),
            "rps_per_round": [round(run["rps"], 2) for run in mode_runs],
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "p50_ms_per_round": [round(run["p50_ms"], 3) for run in mode_runs],
            "requests": sum(run["ok"] for run in mode_runs),
            "non_200": sum(
                n for run in mode_runs for status, n in run["statuses"].items() if status != "200"
            ),
            "errors": sum(sum(run["errors"].values()) for run in mode_runs),
        }
        if mode == "loaded":
            cpu = [run["cpu_ms_per_request"] for run in mode_runs]
            summary[mode]["cpu_ms_per_request"] = {
                name: statistics.median(c[name] for c in cpu if c[name] is not None)
                for name in cpu[0]
                if any(c[name] is not None for c in cpu)
            }
    return summary


def paired_comparisons(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Gateway against the others, round by round (a round's runs are close in time, so a
    machine that is busy for a while weighs on both sides), then the median of the rounds."""

    def per_round(values: list[float]) -> dict[str, Any]:
        return {"median": statistics.median(values), "per_round": [round(v, 3) for v in values]}

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan  # a target that answered nothing in a round

    gateway, direct, basic = runs["gateway"], runs["direct"], runs["basic-auth"]
    shared = {
        f"{target}_vs_direct": per_round(
            [ratio(g["rps"], d["rps"]) for g, d in zip(r["loaded"], direct["loaded"], strict=True)]
        )
        for target, r in runs.items()
        if target in SHARED_LIMITERS.values()
    }
    return {
        **shared,
        "gateway_vs_direct": per_round(
            [
                ratio(g["rps"], d["rps"])
                for g, d in zip(gateway["loaded"], direct["loaded"], strict=True)
            ]
        ),
        "gateway_vs_basic_auth": per_round(
            [
                ratio(g["rps"], b["rps"])
                for g, b in zip(gateway["loaded"], basic["loaded"], strict=True)
            ]
        ),
        "added_p50_ms_c1": per_round(
            [
                g["p50_ms"] - d["p50_ms"]
                for g, d in zip(gateway["unloaded"], direct["unloaded"], strict=True)
            ]
        ),
        "added_p50_ms_loaded": per_round(
            [
                g["p50_ms"] - d["p50_ms"]
                for g, d in zip(gateway["loaded"], direct["loaded"], strict=True)
            ]
        ),
    }


def bench_artifacts(
    mlflow: Server, gateway: Server, scratch: Path, size_mib: int, repeats: int
) -> dict[str, Any]:
    """Upload and download ``size_mib`` MiB direct and through the gateway, from and to
    files, ``repeats`` times in turn (direct, gateway); the gateway's RSS is watched while
    it passes the data."""
    source = scratch / "source.bin"
    expected = random_file(source, size_mib)
    size = size_mib * MIB
    limit = 60 + size_mib * 2.0  # seconds: far above any plausible transfer time
    mb_s: dict[str, dict[str, list[float]]] = {
        d: {"direct": [], "gateway": []} for d in ("upload", "download")
    }
    rss: dict[str, list[dict[str, float]]] = {"upload": [], "download": []}
    try:
        for repeat in range(1, repeats + 1):
            for direction in ("upload", "download"):
                for target, server in (("direct", mlflow), ("gateway", gateway)):
                    os.sync()  # no transfer inherits another's dirty pages
                    sink = scratch / f"downloaded-{target}.bin"
                    job = {
                        "kind": direction,
                        "url": f"{server.url}{ARTIFACT_ENDPOINT}bench/{target}/blob.bin",
                        "headers": server.headers,
                        "file": str(source if direction == "upload" else sink),
                        "timeout": 120.0,
                    }
                    cpu_before = cpu_seconds(gateway.pid)
                    with RssSampler(gateway.pid) as sampler:
                        result = run_client(job, limit_seconds=limit)
                    gateway_cpu = cpu_seconds(gateway.pid) - cpu_before
                    if result["status"] != 200 or result["bytes"] != size:
                        raise RuntimeError(f"{direction} {target} failed: {result}")
                    if direction == "download":
                        if file_sha256(sink) != expected:
                            raise RuntimeError(f"{direction} {target}: the bytes differ")
                        sink.unlink()
                    speed = size / result["elapsed"] / 1e6
                    mb_s[direction][target].append(speed)
                    if target == "gateway":
                        rss[direction].append(
                            {
                                "gateway_cpu_seconds": gateway_cpu,
                                "baseline_mib": sampler.baseline_kib / 1024,
                                "peak_mib": sampler.peak_kib / 1024,
                                "growth_mib": (sampler.peak_kib - sampler.baseline_kib) / 1024,
                            }
                        )
                    print(
                        f"  {repeat} {direction:8} {target:8} {speed:8.1f} MB/s  "
                        f"({result['elapsed']:.1f} s)",
                        flush=True,
                    )
    finally:
        for leftover in scratch.glob("*.bin"):
            leftover.unlink()
    results: dict[str, Any] = {"size_bytes": size, "repeats": repeats}
    for direction, by_target in mb_s.items():
        ratios = [g / d for g, d in zip(by_target["gateway"], by_target["direct"], strict=True)]
        results[direction] = {
            "direct_mb_s": statistics.median(by_target["direct"]),
            "gateway_mb_s": statistics.median(by_target["gateway"]),
            "direct_mb_s_per_repeat": [round(v, 1) for v in by_target["direct"]],
            "gateway_mb_s_per_repeat": [round(v, 1) for v in by_target["gateway"]],
            "gateway_vs_direct": {
                "median": statistics.median(ratios),
                "per_repeat": [round(v, 3) for v in ratios],
            },
            "gateway_cpu_seconds_per_gib": statistics.median(
                r["gateway_cpu_seconds"] * MIB / size_mib / 1024 for r in rss[direction]
            ),
        }
    results["gateway_rss"] = rss
    results["gateway_rss_growth_mib"] = max(r["growth_mib"] for rs in rss.values() for r in rs)
    return results


# ---- report ---------------------------------------------------------------------------------


def goals(reads: dict[str, Any], artifacts: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each target with the measured value and PASS or MISS."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, goal: float, *, at_most: bool = False) -> None:
        met = value <= goal if at_most else value >= goal
        relation = "<=" if at_most else ">="
        checks.append(
            {
                "target": name,
                "value": round(value, 3),
                "relation": relation,
                "goal": goal,
                "met": met,
            }
        )

    for endpoint, result in reads.items():
        paired = result["paired"]
        cached = endpoint in CACHED_ENDPOINTS
        check(
            f"{endpoint}: gateway/direct throughput",
            paired["gateway_vs_direct"]["median"],
            GOAL_CACHED_VS_DIRECT if cached else GOAL_VS_DIRECT,
        )
        for target in SHARED_LIMITERS.values():
            if f"{target}_vs_direct" in paired:
                check(
                    f"{endpoint}: {target}/direct throughput",
                    paired[f"{target}_vs_direct"]["median"],
                    GOAL_VS_DIRECT,
                )
        check(
            f"{endpoint}: gateway/basic-auth throughput",
            paired["gateway_vs_basic_auth"]["median"],
            GOAL_VS_BASIC_AUTH,
        )
        check(
            f"{endpoint}: added median latency at concurrency 1, ms",
            paired["added_p50_ms_c1"]["median"],
            GOAL_CACHED_ADDED_MEDIAN_MS if cached else GOAL_ADDED_MEDIAN_MS,
            at_most=True,
        )
    if artifacts is not None:
        for direction in ("upload", "download"):
            check(
                f"artifact {direction}: gateway/direct MB/s",
                artifacts[direction]["gateway_vs_direct"]["median"],
                GOAL_ARTIFACT_VS_DIRECT,
            )
        check(
            "gateway RSS growth during the artifact transfers, MiB",
            artifacts["gateway_rss_growth_mib"],
            GOAL_RSS_GROWTH_MIB,
            at_most=True,
        )
    return checks


def print_report(record: dict[str, Any]) -> None:
    m = record["machine"]
    print(
        f"\n{m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}, "
        f"MLflow {m['mlflow']}; {record['date']}"
    )
    s = record["settings"]
    print(
        f"MLflow workers {s['mlflow_workers']} (each server), gateway workers 1, concurrency "
        f"{s['concurrency']}, {s['rounds']} rounds of at most {s['max_requests']} requests "
        f"or {s['duration_seconds']:g} s\n"
    )
    print(
        "| endpoint | target | req/s | p50 ms | p99 ms | p50 ms, c=1 | p99 ms, c=1 "
        "| CPU ms/req: gateway | MLflow | client |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for endpoint, result in record["reads"].items():
        for target, r in result["targets"].items():
            cpu = r["loaded"].get("cpu_ms_per_request", {})
            cells = [f"{cpu[k]:.2f}" if cpu.get(k) is not None else "" for k in CPU_COLUMNS]
            print(
                f"| {endpoint} | {target} | {r['loaded']['rps']:.1f} | "
                f"{r['loaded']['p50_ms']:.2f} | {r['loaded']['p99_ms']:.2f} | "
                f"{r['unloaded']['p50_ms']:.2f} | {r['unloaded']['p99_ms']:.2f} | "
                + " | ".join(cells)
                + " |"
            )
    print()
    for endpoint, result in record["reads"].items():
        paired = result["paired"]
        print(
            f"{endpoint}, median of the rounds: gateway/direct "
            f"{paired['gateway_vs_direct']['median']:.3f}x, gateway/basic-auth "
            f"{paired['gateway_vs_basic_auth']['median']:.1f}x, added median latency "
            f"{paired['added_p50_ms_c1']['median']:+.2f} ms at concurrency 1, "
            f"{paired['added_p50_ms_loaded']['median']:+.2f} ms at concurrency {s['concurrency']}"
        )
        for target in SHARED_LIMITERS.values():
            if f"{target}_vs_direct" in paired:
                ratio = paired[f"{target}_vs_direct"]
                print(f"  {target}/direct {ratio['median']:.3f}x (per round {ratio['per_round']})")
    a = record.get("artifacts")
    if a:
        print(
            f"\n| artifact, {a['size_bytes'] // MIB} MiB, median of {a['repeats']} "
            "| direct MB/s | gateway MB/s | gateway/direct | gateway CPU s/GiB |"
        )
        print("| --- | ---: | ---: | ---: | ---: |")
        for direction in ("upload", "download"):
            d = a[direction]
            print(
                f"| {direction} | {d['direct_mb_s']:.1f} | {d['gateway_mb_s']:.1f} | "
                f"{d['gateway_vs_direct']['median']:.2f} | "
                f"{d['gateway_cpu_seconds_per_gib']:.2f} |"
            )
        print(f"gateway peak RSS growth: {a['gateway_rss_growth_mib']:.1f} MiB")
    print()
    for phase in ("cpu_during_reads", "cpu_during_artifacts"):
        if phase in record:
            c = record[phase]
            print(
                f"{phase.replace('_', ' ')}: machine busy {c['busy_percent']}%, this benchmark "
                f"{c['benchmark_percent']}%, other processes {c['other_processes_percent']}%, "
                f"steal {c['steal_percent']}%"
            )
            if c["other_processes_percent"] > 10 or c["steal_percent"] > 5:
                print("  WARNING: the machine was not quiet; these figures are disturbed.")
    print()
    for c in record["targets"]:
        print(
            f"{'PASS' if c['met'] else 'MISS'}  {c['target']}: {c['value']:.3f} "
            f"(goal {c['relation']} {c['goal']:g})"
        )


def write_record(record: dict[str, Any]) -> None:
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    partial = RESULTS_FILE.with_suffix(".json.tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(RESULTS_FILE)


# ---- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact-mib", type=int, default=1024, help="0 skips artifacts")
    parser.add_argument("--artifact-repeats", type=int, default=3)
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run, at most")
    parser.add_argument("--max-requests", type=int, default=5000, help="per run, at most")
    parser.add_argument(
        "--latency-requests",
        type=int,
        default=1000,
        help="per target, at most, in each round's concurrency-1 run of direct and gateway",
    )
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="that run's time limit")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--warmup-requests", type=int, default=300)
    parser.add_argument(
        "--shared-limiters",
        default="",
        help="comma-separated, of postgres,redis: also measure gateways with that shared limit",
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-write", action="store_true", help="do not write latest.json")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.client:
        client_main()
        return
    record: dict[str, Any] = {
        **record_start(),
        "settings": {
            "mlflow_workers": args.mlflow_workers,
            "gateway_workers": 1,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "duration_seconds": args.duration,
            "max_requests": args.max_requests,
            "latency_requests_per_target": args.latency_requests,
            "latency_seconds": args.latency_seconds,
            "warmup_seconds": args.warmup_seconds,
            "warmup_requests": args.warmup_requests,
            "artifact_mib": args.artifact_mib,
            "artifact_repeats": args.artifact_repeats,
            "load_generator": "python asyncio + httpx (uvloop), one process",
            "registered_models": REGISTERED_MODELS,
        },
    }
    shared = [name for name in args.shared_limiters.split(",") if name]
    unknown = set(shared) - set(SHARED_LIMITERS)
    if unknown:
        raise SystemExit(f"--shared-limiters: unknown {', '.join(sorted(unknown))}")
    record["settings"]["shared_limiters"] = {
        SHARED_LIMITERS[name]: {"rate_per_second": SHARED_LIMIT_RATE, "lease_tokens": 1}
        for name in shared
    }
    servers: list[Server] = []
    with (
        tempfile.TemporaryDirectory(prefix="hokusai-bench-") as tmp,
        contextlib.ExitStack() as databases,
        running(servers),
    ):
        root = Path(tmp)
        print("starting MLflow, MLflow basic-auth and the gateway …", flush=True)
        mlflow = start_mlflow(root / "mlflow", args.mlflow_workers, basic_auth=False)
        servers.append(mlflow)
        basic = start_mlflow(root / "basic-auth", args.mlflow_workers, basic_auth=True)
        servers.append(basic)
        mlflow.wait_ready("/health")
        gateway = start_gateway(root, mlflow.url)
        servers.append(gateway)
        basic.wait_ready("/health")
        gateway.wait_ready("/health")
        seed(mlflow)
        seed(basic)
        targets = {"direct": mlflow, "gateway": gateway, "basic-auth": basic}
        watch = {
            "direct": {"mlflow": mlflow.pid},
            "gateway": {"gateway": gateway.pid, "mlflow": mlflow.pid},
            "basic-auth": {"mlflow": basic.pid},
        }
        pids = [mlflow.pid, basic.pid, gateway.pid]
        for limiter in shared:
            name = SHARED_LIMITERS[limiter]
            # PostgreSQL: the auth store is PostgreSQL too (the limit lives there). Redis: the
            # auth store stays SQLite, so only the limiter differs from ``gateway``.
            variant = start_gateway(
                root,
                mlflow.url,
                name=name,
                database_url=(
                    databases.enter_context(postgres_database(args.postgres_url))
                    if limiter == "postgres"
                    else None
                ),
                redis_url=args.redis_url if limiter == "redis" else None,
            )
            servers.append(variant)
            variant.wait_ready("/health")
            targets[name] = variant
            watch[name] = {"gateway": variant.pid, "mlflow": mlflow.pid}
            pids.append(variant.pid)
        with CpuAccount(pids) as reads_cpu:
            reads = bench_reads(targets, watch, args)
        record["cpu_during_reads"] = reads_cpu.result
        artifacts = None
        if args.artifact_mib > 0:
            print(f"\nartifacts: {args.artifact_mib} MiB", flush=True)
            with CpuAccount(pids) as artifacts_cpu:
                artifacts = bench_artifacts(
                    mlflow, gateway, root, args.artifact_mib, args.artifact_repeats
                )
            record["cpu_during_artifacts"] = artifacts_cpu.result
    record["load_average_after"] = load_average()
    record["reads"] = reads
    if artifacts is not None:
        record["artifacts"] = artifacts
    record["targets"] = goals(reads, artifacts)
    print_report(record)
    if not args.no_write:
        write_record(record)
        print(f"\nwritten: {RESULTS_FILE.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
