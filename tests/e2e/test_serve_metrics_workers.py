"""`hokusai serve --workers 2`: every worker counts into one set of metrics (Prometheus
multiprocess mode), so /metrics shows the total whichever worker answers the scrape."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import replicas

pytestmark = pytest.mark.integration

# An authenticated request the gateway answers itself: the count does not wait on MLflow.
LIST_KEYS = "/api/v1/keys"
ADMIN_OK = re.compile(
    r'^hokusai_requests_total\{method="GET",route_class="admin",status="200",'
    r'workspace="platform"\} (\S+)$',
    re.M,
)
REQUESTS = 60


def admin_count(metrics_text: str) -> float:
    found = ADMIN_OK.search(metrics_text)
    return float(found.group(1)) if found else 0.0


def count_in_file(path: Path) -> float:
    """What one worker's own file holds (each worker writes counter_<pid>.db)."""
    for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
        for sample in metric.samples:
            if sample.name == "hokusai_requests_total" and sample.labels == {
                "method": "GET",
                "route_class": "admin",
                "status": "200",
                "workspace": "platform",  # the first start's key is a platform admin key
            }:
                return float(sample.value)
    return 0.0


def test_metrics_count_the_requests_of_every_worker(
    mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    stale = tmp_path / "serve" / "prometheus-multiproc"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"left by an earlier run")  # must be cleared

    with replicas(["serve"], None, None, mlflow_server.url, tmp_path, workers=2) as [serve]:
        key = (tmp_path / "serve" / "admin.key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}

        def one(_: int) -> int:
            # A new connection each time: the kernel hands connections to either worker.
            return httpx.get(serve.url + LIST_KEYS, headers=headers, timeout=120).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(one, range(REQUESTS)))
        assert statuses == [200] * REQUESTS

        files = sorted(stale.glob("counter_*.db"))
        assert stale / "counter_1.db" not in files, "the directory was emptied at start"
        per_worker = {f.name: count_in_file(f) for f in files}
        answering = [name for name, n in per_worker.items() if n > 0]
        assert len(answering) == 2, f"both workers must have answered: {per_worker}"
        assert sum(per_worker.values()) == REQUESTS

        # Whichever worker answers the scrape, it reports the total of both.
        for _ in range(10):
            scraped = httpx.get(serve.url + "/metrics", timeout=120)
            assert scraped.status_code == 200
            assert admin_count(scraped.text) == REQUESTS, scraped.text[:2000]
