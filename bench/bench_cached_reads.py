"""The model resolution reads with a load generator cheaper than the gateway: wrk.

``bench_gateway.py`` drives every target with one Python process, which spends about 3 ms
of CPU per request: more than the gateway spends on a cached read, so it cannot show
what the resolution cache can do. Here the same servers (one MLflow, ``hokusai serve
--mlflow-url`` in front of it, the same seeded registry) are driven by wrk, a compiled
load generator, one run per target and endpoint, direct and gateway in turn.

    python bench/bench_cached_reads.py [--duration 10] [--rounds 3] [--connections 16]

Needs wrk (Debian: ``apt-get install wrk``). The API key reaches wrk in a Lua script in
the run's temporary directory (mode 0600, deleted with it), never on a command line.
Loopback only; every run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import load_average
from _servers import ENDPOINTS, Server, running, seed, start_gateway, start_mlflow

READS = ("alias", "version", "get-by-name")  # two cached, one proxied for comparison
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_P50 = re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors:.*")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_script(directory: Path, server: Server) -> Path:
    """A Lua script that sets the target's headers: the key stays off the command line."""
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in server.headers.items()]
    path = directory / f"{server.name}.lua"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def wrk(
    server: Server, script: Path, path: str, connections: int, seconds: float
) -> dict[str, Any]:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            server.url + path,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    rate, p50 = _RATE.search(done.stdout), _P50.search(done.stdout)
    if rate is None or p50 is None:
        raise RuntimeError(f"unreadable wrk output:\n{done.stdout}")
    non_2xx = _NON_2XX.search(done.stdout)
    errors = _ERRORS.search(done.stdout)
    return {
        "rps": float(rate.group(1)),
        "p50_ms": float(p50.group(1)) * _UNIT_MS[p50.group(2)],
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    seconds = min(max(args.duration, 1.0), 60.0)
    rounds = min(max(args.rounds, 1), 10)
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="hokusai-bench-wrk-") as scratch:
        root = Path(scratch)
        mlflow = start_mlflow(root / "mlflow", 1, basic_auth=False)
        servers = [mlflow]
        with running(servers):
            mlflow.wait_ready("/health")
            gateway = start_gateway(root, mlflow.url)
            servers.append(gateway)
            gateway.wait_ready("/health")
            seed(mlflow)
            scripts = {s.name: wrk_script(root, s) for s in (mlflow, gateway)}
            results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for read in READS:
                path = ENDPOINTS[read]
                for server in (mlflow, gateway):  # warm-up: caches, connections, imports
                    wrk(server, scripts[server.name], path, args.connections, 2)
                for _ in range(rounds):
                    for connections in (args.connections, 1):
                        for server in (mlflow, gateway):
                            run = wrk(server, scripts[server.name], path, connections, seconds)
                            results.setdefault((read, server.name, connections), []).append(run)
    print(f"load average after: {load_average()}")
    print(
        f"\n| read | target | req/s, c={args.connections} (median of {rounds}) | "
        "p50 ms, c=1 | non-2xx |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for read in READS:
        for name in ("mlflow", "gateway"):
            loaded = results[(read, name, args.connections)]
            single = results[(read, name, 1)]
            rps = statistics.median(r["rps"] for r in loaded)
            p50 = statistics.median(r["p50_ms"] for r in single)
            bad = sum(r["non_2xx"] for r in loaded + single)
            target = "direct" if name == "mlflow" else "gateway"
            print(f"| {read} | {target} | {rps:.1f} | {p50:.2f} | {bad} |")
        direct = [r["rps"] for r in results[(read, "mlflow", args.connections)]]
        through = [r["rps"] for r in results[(read, "gateway", args.connections)]]
        ratios = [round(g / d, 2) for g, d in zip(through, direct, strict=True)]
        print(f"{read}: gateway/direct {statistics.median(ratios):.2f}x (per round {ratios})")


if __name__ == "__main__":
    main()
