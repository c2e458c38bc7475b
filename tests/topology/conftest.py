"""The production topology on loopback (deploy/stack): nginx with TLS, two gateway replicas,
MLflow on PostgreSQL with S3 artifacts, two webhook dispatchers. Started once for every
test of this package, as ``make topology`` starts it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import postgres_database

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))

from stack.topology import Topology

# Webhook receivers of the tests listen on loopback; retries and claims are short so that a
# killed dispatcher's deliveries are taken over within seconds.
OVERRIDES = {
    "gateway": {"HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1"},
    "worker": {
        "HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1",
        "HOKUSAI_WEBHOOK_RETRY_SCALE": "0.001",
        "HOKUSAI_WEBHOOK_TIMEOUT": "2",
        "HOKUSAI_RECONCILE_INTERVAL": "2",
    },
}


@pytest.fixture(scope="package")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    workdir = tmp_path_factory.mktemp("topology")
    with Topology(workdir, postgres_database, OVERRIDES).start() as running:
        yield running
