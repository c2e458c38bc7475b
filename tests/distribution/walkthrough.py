"""The LSCOR walkthrough as a user's script: run by another interpreter (a fresh
virtualenv holding only the installed wheel), it imports nothing of the test suite.

    python walkthrough.py API_URL API_KEY NAME [SERIALIZATION_FORMAT]

Trains a baseline and an improvement on synthetic leads, registers the baseline, the
baseline for a token, and the improvement; reads the lineage and the token's latest
version; loads a version back and predicts. Prints one JSON object of what it saw.
"""

from __future__ import annotations

import json
import sys

import mlflow
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import hokusai
from hokusai import ModelRegistry


def leads(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    features = generator.normal(size=(rows, 4))
    labels = (features @ np.array([1.5, -1.0, 0.5, 0.0]) > 0).astype(int)
    return features, labels


def main(api_url: str, api_key: str, name: str, serialization_format: str | None) -> None:
    features, labels = leads(300, seed=3)
    holdout, holdout_labels = leads(200, seed=11)
    baseline_model = LogisticRegression().fit(features, labels)
    improved_model = GradientBoostingClassifier(random_state=0).fit(features, labels)
    auroc = float(roc_auc_score(holdout_labels, baseline_model.predict_proba(holdout)[:, 1]))
    improved_auroc = float(
        roc_auc_score(holdout_labels, improved_model.predict_proba(holdout)[:, 1])
    )
    token = name.lower() + "-token"
    with ModelRegistry(api_key=api_key, api_url=api_url, max_retry_time=60) as registry:
        baseline = registry.register_baseline(
            baseline_model,
            model_type="lead_scoring",
            model_name=name,
            metrics={"auroc": auroc},
            serialization_format=serialization_format,
        )
        tokenized = registry.register_tokenized_model(
            f"runs:/{baseline.run_id}/model", name + "-token", token, "auroc", 0.5
        )
        improved = registry.register_improved_model(
            improved_model,
            f"{name}/{baseline.version}",
            {"auroc": improved_auroc - auroc},
            "contributor-1",
            metrics={"auroc": improved_auroc},
            serialization_format=serialization_format,
        )
        lineage = registry.get_model_lineage(name)
        latest_for_token = registry.get_tokenized_model(token)
        loaded = registry.load_model(
            f"{name}/{improved.version}", allow_pickle=serialization_format != "skops"
        )
        predicted = [int(p) for p in loaded.predict(holdout[:20])]
    print(
        json.dumps(
            {
                "hokusai": hokusai.__version__,
                "mlflow": mlflow.__version__,
                "baseline": baseline.version,
                "tokenized": [tokenized.name, tokenized.version],
                "improved": improved.version,
                "lineage": [[e["version"], e["registration_kind"], e["baseline"]] for e in lineage],
                "token_latest": [latest_for_token.name, latest_for_token.version],
                "serialization_format": [
                    baseline.tags.get("hokusai_serialization_format"),
                    improved.tags.get("hokusai_serialization_format"),
                ],
                "predicted": predicted,
                "expected": [int(p) for p in improved_model.predict(holdout[:20])],
                "hokusai_file": hokusai.__file__,
                "hokusai_modules": sorted(m for m in sys.modules if m.startswith("hokusai")),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
