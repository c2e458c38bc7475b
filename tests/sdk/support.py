"""What the SDK tests share: unique names, a synthetic lead-scoring data set, and direct
looks at what MLflow holds, past the SDK."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from tests.helpers import MLFLOW_API

ARTIFACTS_API = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class LeadData:
    features: Any  # pandas DataFrame
    labels: Any  # pandas Series, 1 = converted


def make_leads(rows: int, seed: int) -> LeadData:
    """Synthetic leads: bigger companies that visit and open emails convert more often."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "company_size": rng.lognormal(4.0, 1.0, rows).round(),
            "site_visits": rng.poisson(3, rows).astype(float),
            "email_opens": rng.poisson(2, rows).astype(float),
            "days_since_contact": rng.integers(0, 90, rows).astype(float),
        }
    )
    score = (
        0.4 * np.log1p(frame["company_size"])
        + 0.5 * frame["site_visits"]
        + 0.6 * frame["email_opens"]
        - 0.03 * frame["days_since_contact"]
        - 3.0
        + rng.normal(0, 1.0, rows)
    )
    labels = pd.Series((score > 0).astype(int), name="converted")
    return LeadData(frame, labels)


# ---- MLflow as stored --------------------------------------------------------------------


class MlflowRest:
    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def __enter__(self) -> MlflowRest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def call(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.request(method, MLFLOW_API + endpoint, **kwargs)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def versions_with_registration(self, registration_id: str) -> list[dict[str, Any]]:
        answer = self.call(
            "GET",
            "model-versions/search",
            params={"filter": f"tags.`hokusai.registration_id` = '{registration_id}'"},
        )
        return list(answer.get("model_versions", []))

    def experiment_ids(self) -> list[str]:
        answer = self.call(
            "POST", "experiments/search", json={"max_results": 1000, "view_type": "ALL"}
        )
        return [e["experiment_id"] for e in answer.get("experiments", [])]

    def runs_with_registration(self, registration_id: str) -> list[dict[str, Any]]:
        """Every run tagged with the registration id, deleted ones included."""
        answer = self.call(
            "POST",
            "runs/search",
            json={
                "experiment_ids": self.experiment_ids(),
                "filter": f"tags.`hokusai.registration_id` = '{registration_id}'",
                "run_view_type": "ALL",
                "max_results": 1000,
            },
        )
        return list(answer.get("runs", []))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.call("GET", "runs/get", params={"run_id": run_id})["run"])

    def run_metrics(self, run_id: str) -> dict[str, float]:
        data = self.run(run_id).get("data", {})
        return {m["key"]: m["value"] for m in data.get("metrics", [])}

    def run_tags(self, run_id: str) -> dict[str, str]:
        data = self.run(run_id).get("data", {})
        return {t["key"]: t["value"] for t in data.get("tags", [])}

    def version(self, name: str, version: str) -> dict[str, Any]:
        return dict(
            self.call("GET", "model-versions/get", params={"name": name, "version": version})[
                "model_version"
            ]
        )

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.version(name, version).get("tags", [])}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.call(
            "POST",
            "registered-models/alias",
            json={"name": name, "alias": alias, "version": version},
        )

    def artifact_files(self, path: str) -> list[str]:
        """Every file under ``path`` of the artifact store, recursively."""
        found: list[str] = []
        pending = [path]
        while pending:
            current = pending.pop()
            response = self.client.get(ARTIFACTS_API, params={"path": current})
            assert response.status_code == 200, response.text
            for entry in response.json().get("files", []):
                full = f"{current}/{entry['path']}"
                (pending if entry.get("is_dir") else found).append(full)
        return sorted(found)
