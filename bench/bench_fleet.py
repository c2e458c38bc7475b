"""Fleet pulls: many serving replicas downloading one newly promoted version at once.

Each round registers a new version whose model file is ``--mib`` MiB of random bytes,
then lets ``--clients`` concurrent downloads of that file run, all at once:

1. **direct**: from MLflow's own artifact serving (``mlflow server --serve-artifacts``);
2. **gateway, cold**: through the gateway, right after registration: its artifact cache
   has never seen the file, so this includes the one fill from MLflow;
3. **gateway, warm**: through the gateway again (a second fleet, or replicas restarting).

The figure of each is the aggregate throughput: all bytes received over the wall time
from the first request to the last byte. The gateway's RSS is sampled throughout; every
download's length is checked, and one download per target is checked byte for byte
(SHA-256) before the fleets. The clients run in one process of their own (aiohttp,
discarding the bytes), so the servers and the clients share the machine's cores as they
would on one host.

Usage: ``.venv/bin/python bench/bench_fleet.py [--mib 256] [--clients 32] [--rounds 3]``;
it writes ``bench/results/fleet.json`` (``--no-write``: not).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from _common import BENCH_DIR, MIB, RssSampler, load_average, random_file, record_start, run_child
from _servers import ARTIFACT_ENDPOINT, Server, running, start_gateway, start_mlflow

RESULTS_FILE = BENCH_DIR / "results" / "fleet.json"
GOAL_COLD_VS_DIRECT = 3.0
GOAL_RSS_GROWTH_MIB = 128.0
# The fleet's in-flight downloads, all with one key: the per-key in-flight limit
# (HOKUSAI_MAX_IN_FLIGHT_PER_KEY) is raised for them, as a fleet's operator would.
IN_FLIGHT = "64"


# ---- the fleet (runs in its own process) -------------------------------------------------


def fleet_main() -> None:
    """``--fleet``: read a job on stdin, run the downloads, print the result as JSON."""
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_fleet(job))))


async def _fleet(job: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=job["timeout"])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:

        async def one() -> tuple[int, int, float]:
            received = 0
            async with session.get(job["url"], headers=job["headers"]) as response:
                async for chunk in response.content.iter_chunked(MIB):
                    received += len(chunk)
                return response.status, received, time.perf_counter()

        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(job["clients"])))
    ended = max(done for _, _, done in results)
    return {
        "elapsed": ended - started,
        "statuses": sorted({status for status, _, _ in results}),
        "bytes": [received for _, received, _ in results],
    }


def run_fleet(url: str, headers: dict[str, str], clients: int, size: int) -> dict[str, Any]:
    job = {"url": url, "headers": headers, "clients": clients, "timeout": 600}
    result = run_child(__file__, "--fleet", job, timeout=900)
    if result["statuses"] != [200] or set(result["bytes"]) != {size}:
        raise RuntimeError(f"a download failed: {result['statuses']}, {set(result['bytes'])}")
    result["aggregate_mb_s"] = clients * size / result["elapsed"] / 1e6
    return result


# ---- one version to pull ---------------------------------------------------------------


def register_version(mlflow: Server, scratch: Path, size_mib: int, name: str) -> tuple[str, str]:
    """A READY version holding a ``size_mib`` MiB file, made directly in MLflow's default
    workspace: (the file's artifact path, its SHA-256)."""
    source = scratch / "model.bin"
    digest = random_file(source, size_mib)
    api = "/api/2.0/mlflow"
    with httpx.Client(base_url=mlflow.url, timeout=600) as client:
        experiment = client.post(f"{api}/experiments/get-by-name", params={"experiment_name": name})
        if experiment.status_code != 200:
            client.post(f"{api}/experiments/create", json={"name": name}).raise_for_status()
        experiment_id = client.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": name}
        ).json()["experiment"]["experiment_id"]
        run = client.post(f"{api}/runs/create", json={"experiment_id": experiment_id}).json()
        info = run["run"]["info"]
        root = info["artifact_uri"].split("mlflow-artifacts:", 1)[1].strip("/")
        with open(source, "rb") as body:
            client.put(
                f"{ARTIFACT_ENDPOINT}{root}/model/model.bin", content=body
            ).raise_for_status()
        client.post(f"{api}/registered-models/create", json={"name": name}).raise_for_status()
        version = client.post(
            f"{api}/model-versions/create",
            json={
                "name": name,
                "source": f"mlflow-artifacts:/{root}/model",
                "run_id": info["run_id"],
            },
        ).json()["model_version"]
        if version["status"] != "READY":
            raise RuntimeError(f"the version is {version['status']}")
    source.unlink()
    return f"{root}/model/model.bin", digest


def check_bytes(url: str, headers: dict[str, str], expected: str) -> None:
    digest = hashlib.sha256()
    with httpx.Client(timeout=600) as client, client.stream("GET", url, headers=headers) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_raw(MIB):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise RuntimeError(f"{url}: the bytes differ")


# ---- the benchmark ----------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    if args.fleet:
        fleet_main()
        return
    size = args.mib * MIB
    record: dict[str, Any] = {
        **record_start(),
        "settings": {
            "file_mib": args.mib,
            "clients": args.clients,
            "rounds": args.rounds,
            "mlflow_workers": 1,
            "gateway_workers": 1,
            "client": "aiohttp, one process, bytes discarded",
        },
    }
    rounds: list[dict[str, Any]] = []
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="hokusai-fleet-") as tmp, running(servers):
        root = Path(tmp)
        print("starting MLflow and the gateway …", flush=True)
        mlflow = start_mlflow(root / "mlflow", 1, basic_auth=False)
        servers.append(mlflow)
        mlflow.wait_ready("/health")
        gateway = start_gateway(
            root,
            mlflow.url,
            settings_env={
                "HOKUSAI_MAX_IN_FLIGHT_PER_KEY": IN_FLIGHT,
                "HOKUSAI_ARTIFACT_CACHE_MAX_BYTES": str(max(4 * 1024**3, 2 * size)),
            },
        )
        servers.append(gateway)
        gateway.wait_ready("/health")
        for round_no in range(1, args.rounds + 1):
            path, digest = register_version(mlflow, root, args.mib, f"fleet-{round_no}")
            direct_url = f"{mlflow.url}{ARTIFACT_ENDPOINT}{path}"
            gateway_url = f"{gateway.url}/api/mlflow{ARTIFACT_ENDPOINT}{path}"
            check_bytes(direct_url, mlflow.headers, digest)
            figures: dict[str, Any] = {}
            direct = run_fleet(direct_url, mlflow.headers, args.clients, size)
            figures["direct"] = direct["aggregate_mb_s"]
            with RssSampler(gateway.pid) as sampler:
                cold = run_fleet(gateway_url, gateway.headers, args.clients, size)
                warm = run_fleet(gateway_url, gateway.headers, args.clients, size)
            check_bytes(gateway_url, gateway.headers, digest)
            figures["gateway_cold"] = cold["aggregate_mb_s"]
            figures["gateway_warm"] = warm["aggregate_mb_s"]
            figures["cold_vs_direct"] = figures["gateway_cold"] / figures["direct"]
            figures["warm_vs_direct"] = figures["gateway_warm"] / figures["direct"]
            figures["seconds"] = {
                "direct": direct["elapsed"],
                "gateway_cold": cold["elapsed"],
                "gateway_warm": warm["elapsed"],
            }
            figures["gateway_rss_growth_mib"] = (sampler.peak_kib - sampler.baseline_kib) / 1024
            rounds.append(figures)
            print(
                f"  round {round_no}: direct {figures['direct']:7.0f} MB/s, gateway cold "
                f"{figures['gateway_cold']:7.0f} MB/s ({figures['cold_vs_direct']:.2f}x), warm "
                f"{figures['gateway_warm']:7.0f} MB/s ({figures['warm_vs_direct']:.2f}x), RSS "
                f"+{figures['gateway_rss_growth_mib']:.0f} MiB",
                flush=True,
            )
    record["load_average_after"] = load_average()
    record["rounds"] = rounds
    summary = {
        name: statistics.median(r[name] for r in rounds)
        for name in ("direct", "gateway_cold", "gateway_warm", "cold_vs_direct", "warm_vs_direct")
    }
    summary["gateway_rss_growth_mib_max"] = max(r["gateway_rss_growth_mib"] for r in rounds)
    record["median"] = summary
    record["targets"] = [
        {
            "goal": f"cold fleet through the gateway >= {GOAL_COLD_VS_DIRECT:g}x MLflow",
            "value": round(summary["cold_vs_direct"], 2),
            "met": summary["cold_vs_direct"] >= GOAL_COLD_VS_DIRECT,
        },
        {
            "goal": f"gateway RSS growth <= {GOAL_RSS_GROWTH_MIB:g} MiB",
            "value": round(summary["gateway_rss_growth_mib_max"], 1),
            "met": summary["gateway_rss_growth_mib_max"] <= GOAL_RSS_GROWTH_MIB,
        },
    ]
    for target in record["targets"]:
        print(f"{'PASS' if target['met'] else 'MISS'}  {target['goal']}: {target['value']}")
    if not args.no_write:
        RESULTS_FILE.parent.mkdir(exist_ok=True)
        RESULTS_FILE.write_text(json.dumps(record, indent=2) + "\n")
        print(f"written to {RESULTS_FILE}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the model file")
    parser.add_argument("--clients", type=int, default=32, help="concurrent downloads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not write the record")
    parser.add_argument("--fleet", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
