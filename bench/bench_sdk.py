"""Benchmark of a whole registration: the SDK through the gateway vs the stock MLflow
client straight to MLflow, for the same model.

Both sides do the same work on one MLflow server (SQLite, local artifacts, loopback):
an experiment, a run with one metric, the model saved as an MLflow sklearn model, its
files uploaded, a registered model version, READY, an alias. The one difference is the
point of the comparison: the stock client lets MLflow infer the model's pip requirements
(a subprocess that loads the model, seconds), the SDK names them itself
(``hokusai.sdk.requirements``).

(a) ``sdk``: ``ModelRegistry.register_baseline`` through ``hokusai serve --mlflow-url``
    (a separate process, everything on: auth, policy, audit, events, metrics, log);
(b) ``direct``: ``mlflow.start_run`` + ``log_metric`` + ``mlflow.sklearn.log_model``
    + ``register_model`` + ``set_registered_model_alias`` to MLflow itself.

Rounds alternate the two sides; the median of each is reported with the ratio sdk/direct
(target: <= 0.25). Results go to bench/results/sdk.json.
Usage: ``.venv/bin/python bench/bench_sdk.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import BENCH_DIR, record_start
from _servers import Server, running, start_gateway, start_mlflow

RESULTS_FILE = BENCH_DIR / "results" / "sdk.json"
TARGET_RATIO = 0.25


def lead_scoring_model() -> Any:
    """A small lead-scoring classifier on synthetic leads (size, visits, opens, demo)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    leads = np.column_stack(
        [
            rng.lognormal(3, 1, 2000),
            rng.poisson(4, 2000),
            rng.poisson(2, 2000),
            rng.integers(0, 2, 2000),
        ]
    )
    score = 0.002 * leads[:, 0] + 0.3 * leads[:, 1] + 0.4 * leads[:, 2] + 1.5 * leads[:, 3]
    converted = (score + rng.normal(0, 1, 2000) > 3).astype(int)
    return LogisticRegression(max_iter=500).fit(leads, converted)


def register_direct(mlflow_url: str, model: Any, name: str) -> float:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_url)
    started = time.perf_counter()
    experiment = mlflow.set_experiment("bench-direct")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        mlflow.log_metric("auroc", 0.82)
        info = mlflow.sklearn.log_model(model, name="model")
    version = mlflow.register_model(info.model_uri, name)
    MlflowClient().set_registered_model_alias(name, "baseline", version.version)
    return time.perf_counter() - started


def register_sdk(api_url: str, key: str, model: Any, name: str) -> float:
    from hokusai import ModelRegistry

    started = time.perf_counter()
    with ModelRegistry(api_key=key, api_url=api_url) as registry:
        registry.register_baseline(
            model, model_type="lead_scoring", model_name=name, metrics={"auroc": 0.82}
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not write results/sdk.json")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, 20))
    model = lead_scoring_model()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="hokusai-bench-sdk-") as scratch, running(servers):
        root = Path(scratch)
        mlflow = start_mlflow(root / "mlflow", 1, basic_auth=False)
        servers.append(mlflow)
        mlflow.wait_ready("/health")
        gateway = start_gateway(root, mlflow.url)
        servers.append(gateway)
        gateway.wait_ready("/health")
        key = gateway.headers["Authorization"].removeprefix("Bearer ")
        timings: dict[str, list[float]] = {"sdk": [], "direct": []}
        register_direct(mlflow.url, model, "bench-warmup-direct")  # imports, first save
        register_sdk(gateway.url, key, model, "bench-warmup-sdk")
        for round_number in range(rounds):
            timings["direct"].append(register_direct(mlflow.url, model, f"direct-{round_number}"))
            timings["sdk"].append(register_sdk(gateway.url, key, model, f"sdk-{round_number}"))
    sdk, direct = statistics.median(timings["sdk"]), statistics.median(timings["direct"])
    ratio = sdk / direct
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"register a baseline model, median of {rounds} rounds")
    print(f"  direct (stock MLflow client → MLflow): {direct:7.3f} s  {timings['direct']}")
    print(f"  sdk (ModelRegistry → gateway → MLflow): {sdk:7.3f} s  {timings['sdk']}")
    print(f"  ratio sdk/direct: {ratio:.3f}  (target <= {TARGET_RATIO}) {verdict}")
    if args.no_write:
        return
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(
        json.dumps(
            {
                **record_start(),
                "rounds": rounds,
                "seconds": {k: [round(v, 4) for v in vs] for k, vs in timings.items()},
                "median_seconds": {"sdk": round(sdk, 4), "direct": round(direct, 4)},
                "ratio": round(ratio, 4),
                "target": TARGET_RATIO,
                "verdict": verdict,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
