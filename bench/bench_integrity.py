"""Benchmark of tamper evidence on a large model: what the digest manifest costs next to
moving the model's files.

A model directory of ``--mib`` MiB (default 256: an ``MLmodel`` file and one random
weights file) is uploaded through the gateway (``hokusai serve``, which hashes every
upload as it streams to MLflow) and downloaded again. Measured, each the median of
``--rounds``:

- ``manifest``: ``integrity.manifest_of`` over the directory alone, for reference;
- ``upload_plain``: the SDK's ``upload_directory`` through the gateway, nothing hashed on
  the client, and for reference ``upload_direct``, every file ``PUT`` straight to MLflow
  (the difference is the gateway's cost, its streaming hash included);
- ``upload_checked``: the SDK's ``upload_with_manifest``, what a registration does: the
  same upload with the manifest computed on a thread of its own meanwhile;
- ``download_plain``: the SDK's ``download_directory`` through the gateway, nothing
  hashed (``verify="none"``; the artifact cache is off: every round reads from MLflow, as
  a first download does), and for reference ``download_httpx``, every file ``GET`` by a
  bare httpx loop;
- ``download_checked`` and ``verify``: the same download hashing each file as it writes
  it, then ``integrity.verify_directory`` with those digests: what a checked load costs
  before anything is deserialized.

The client (this process: the SDK's side) runs on a core of its own, MLflow and the
gateway on the others, as a client on another machine would (``--shared-cores`` lets
everything share every core, as on one loopback machine).

Goal: the checked upload and the checked download (``download_checked`` + ``verify``)
each under 10 % more than the plain one.
Results go to bench/results/integrity.json.
Usage: ``.venv/bin/python bench/bench_integrity.py [--mib 256] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx

from _common import BENCH_DIR, MIB, pin_tree, random_file, record_start
from _servers import Server, running, start_gateway, start_mlflow
from hokusai.integrity import Manifest, manifest_of, verify_directory
from hokusai.sdk.artifacts import download_directory, upload_directory, upload_with_manifest
from hokusai.sdk.config import ClientConfig
from hokusai.sdk.transport import Transport

RESULTS_FILE = BENCH_DIR / "results" / "integrity.json"
GOAL = 0.10
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
PIECE = MIB

MLMODEL = """artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.pyfunc.model
    python_version: 3.11.7
model_size_bytes: 0
"""


def model_directory(root: Path, mib: int) -> Path:
    directory = root / "model"
    (directory / "data").mkdir(parents=True)
    (directory / "MLmodel").write_text(MLMODEL)
    random_file(directory / "data" / "weights.bin", mib)
    return directory


def files_of(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(PIECE):
            yield block


def upload(client: httpx.Client, base: str, directory: Path, remote: str) -> float:
    started = time.perf_counter()
    for path in files_of(directory):
        relative = path.relative_to(directory).as_posix()
        answer = client.put(f"{base}{ARTIFACTS}{remote}/{relative}", content=pieces(path))
        answer.raise_for_status()
    return time.perf_counter() - started


def download(
    client: httpx.Client, base: str, remote: str, relatives: list[str], target: Path
) -> float:
    started = time.perf_counter()
    for relative in relatives:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        with (
            client.stream("GET", f"{base}{ARTIFACTS}{remote}/{relative}") as answer,
            destination.open("wb") as out,
        ):
            answer.raise_for_status()
            for block in answer.iter_bytes(PIECE):
                out.write(block)
    return time.perf_counter() - started


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="do not give the client a core of its own",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    args = parser.parse_args()
    mib = max(1, min(args.mib, 2048))
    rounds = max(1, min(args.rounds, 10))
    seconds: dict[str, list[float]] = {
        "manifest": [],
        "upload_plain": [],
        "upload_checked": [],
        "upload_direct": [],
        "download_httpx": [],
        "download_plain": [],
        "download_checked": [],
        "verify": [],
    }
    servers: list[Server] = []
    with (
        tempfile.TemporaryDirectory(prefix="hokusai-bench-integrity-") as scratch,
        running(servers),
    ):
        root = Path(scratch)
        directory = model_directory(root, mib)
        relatives = [p.relative_to(directory).as_posix() for p in files_of(directory)]
        mlflow = start_mlflow(root / "mlflow", 1, basic_auth=False)
        servers.append(mlflow)
        mlflow.wait_ready("/health")
        gateway = start_gateway(
            root, mlflow.url, settings_env={"HOKUSAI_ARTIFACT_CACHE_MAX_BYTES": "0"}
        )
        servers.append(gateway)
        gateway.wait_ready("/health")
        cores = sorted(os.sched_getaffinity(0))
        client_cores = set(cores) if args.shared_cores or len(cores) < 2 else {cores[-1]}
        if client_cores != set(cores):
            for server in servers:
                pin_tree(server.pid, set(cores) - client_cores)
            os.sched_setaffinity(0, client_cores)
        timeout = httpx.Timeout(600.0)
        gateway_api = gateway.url + "/api/mlflow"
        config = ClientConfig(
            api_url=gateway.url, api_key=gateway.headers["Authorization"].removeprefix("Bearer ")
        )
        with (
            httpx.Client(headers=gateway.headers, timeout=timeout) as through_gateway,
            httpx.Client(timeout=timeout) as direct,
            contextlib.closing(Transport(config, timeout=600.0, max_retry_time=0)) as transport,
        ):
            manifest: Manifest = manifest_of(directory)  # warms the page cache too
            for round_number in range(rounds):
                remote = f"bench/{uuid.uuid4().hex}/round-{round_number}"
                seconds["manifest"].append(timed(lambda: manifest_of(directory)))
                seconds["upload_plain"].append(
                    timed(partial(upload_directory, transport, directory, remote, progress=False))
                )
                seconds["upload_checked"].append(
                    timed(partial(upload_with_manifest, transport, directory, remote + "-checked"))
                )
                seconds["upload_direct"].append(
                    upload(direct, mlflow.url, directory, remote + "-direct")
                )
                bare = root / f"httpx-{round_number}"
                seconds["download_httpx"].append(
                    download(through_gateway, gateway_api, remote, relatives, bare)
                )
                plain = root / f"plain-{round_number}"
                seconds["download_plain"].append(
                    timed(partial(download_directory, transport, remote, plain, digest=False))
                )
                checked = root / f"checked-{round_number}"
                started = time.perf_counter()
                digests = download_directory(transport, remote, checked)
                seconds["download_checked"].append(time.perf_counter() - started)
                seconds["verify"].append(
                    timed(partial(verify_directory, checked, manifest, "the model", digests))
                )
                for path in files_of(bare) + files_of(plain) + files_of(checked):
                    path.unlink()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    manifest_share = median["upload_checked"] / median["upload_plain"] - 1
    checked_download = median["download_checked"] + median["verify"]
    verify_share = checked_download / median["download_plain"] - 1
    verdict = "PASS" if manifest_share < GOAL and verify_share < GOAL else "MISS"
    placed = f"client on cores {sorted(client_cores)} of {cores}"
    print(f"a {mib} MiB model, median of {rounds} rounds; {placed}")
    for name, value in median.items():
        rate = mib / value if value else float("inf")
        print(f"  {name:17s} {value:7.3f} s  ({rate:6.0f} MiB/s)  {seconds[name]}")
    print(f"  checked / plain upload:   +{manifest_share:6.1%}  (goal < {GOAL:.0%})")
    print(f"  checked / plain download: +{verify_share:6.1%}  (goal < {GOAL:.0%})  {verdict}")
    if args.no_write:
        return
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(
        json.dumps(
            {
                **record_start(),
                "model_mib": mib,
                "client_cores": sorted(client_cores),
                "all_cores": cores,
                "rounds": rounds,
                "seconds": {k: [round(v, 4) for v in vs] for k, vs in seconds.items()},
                "median_seconds": {k: round(v, 4) for k, v in median.items()},
                "checked_upload_extra": round(manifest_share, 4),
                "checked_download_extra": round(verify_share, 4),
                "goal": GOAL,
                "verdict": verdict,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
