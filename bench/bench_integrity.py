"""Benchmark of tamper evidence on a large model: what the digest manifest costs next to
moving the model's files.

A model directory of ``--mib`` MiB (default 256: an ``MLmodel`` file and one random
weights file) is uploaded through the gateway (``hokusai serve``, which hashes every
upload as it streams to MLflow) and downloaded again, as the SDK moves a model's files.
Measured, each the median of ``--rounds``:

- ``manifest``: ``integrity.manifest_of`` over the directory (what a registration adds
  before its upload);
- ``upload``: every file ``PUT`` through the gateway, and for reference straight to
  MLflow (the difference is the gateway's cost, its streaming hash included);
- ``download``: every file ``GET`` through the gateway into a new directory (the artifact
  cache is off: every round reads from MLflow, as a first download does);
- ``verify``: ``integrity.verify_directory`` of the downloaded directory (what loading
  adds before anything is deserialized).

Goal: manifest under 10 % of the upload, verification under 10 % of the download.
Results go to bench/results/integrity.json.
Usage: ``.venv/bin/python bench/bench_integrity.py [--mib 256] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx

from _common import BENCH_DIR, MIB, random_file, record_start
from _servers import Server, running, start_gateway, start_mlflow
from hokusai.integrity import Manifest, manifest_of, verify_directory

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
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    args = parser.parse_args()
    mib = max(1, min(args.mib, 2048))
    rounds = max(1, min(args.rounds, 10))
    seconds: dict[str, list[float]] = {
        "manifest": [],
        "upload_gateway": [],
        "upload_direct": [],
        "download_gateway": [],
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
        timeout = httpx.Timeout(600.0)
        gateway_api = gateway.url + "/api/mlflow"
        with (
            httpx.Client(headers=gateway.headers, timeout=timeout) as through_gateway,
            httpx.Client(timeout=timeout) as direct,
        ):
            manifest: Manifest = manifest_of(directory)  # warms the page cache too
            for round_number in range(rounds):
                remote = f"bench/{uuid.uuid4().hex}/round-{round_number}"
                seconds["manifest"].append(timed(lambda: manifest_of(directory)))
                seconds["upload_gateway"].append(
                    upload(through_gateway, gateway_api, directory, remote)
                )
                seconds["upload_direct"].append(
                    upload(direct, mlflow.url, directory, remote + "-direct")
                )
                target = root / f"downloaded-{round_number}"
                seconds["download_gateway"].append(
                    download(
                        through_gateway, gateway.url + "/api/mlflow", remote, relatives, target
                    )
                )
                seconds["verify"].append(
                    timed(partial(verify_directory, target, manifest, "the benchmark model"))
                )
                for path in files_of(target):
                    path.unlink()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    manifest_share = median["manifest"] / median["upload_gateway"]
    verify_share = median["verify"] / median["download_gateway"]
    verdict = "PASS" if manifest_share < GOAL and verify_share < GOAL else "MISS"
    print(f"a {mib} MiB model, median of {rounds} rounds")
    for name, value in median.items():
        rate = mib / value if value else float("inf")
        print(f"  {name:17s} {value:7.3f} s  ({rate:6.0f} MiB/s)  {seconds[name]}")
    print(f"  manifest / upload:  {manifest_share:6.1%}  (goal < {GOAL:.0%})")
    print(f"  verify / download:  {verify_share:6.1%}  (goal < {GOAL:.0%})  {verdict}")
    if args.no_write:
        return
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(
        json.dumps(
            {
                **record_start(),
                "model_mib": mib,
                "rounds": rounds,
                "seconds": {k: [round(v, 4) for v in vs] for k, vs in seconds.items()},
                "median_seconds": {k: round(v, 4) for k, v in median.items()},
                "manifest_share_of_upload": round(manifest_share, 4),
                "verify_share_of_download": round(verify_share, 4),
                "goal": GOAL,
                "verdict": verdict,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
