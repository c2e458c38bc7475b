"""``make topology``: the loopback production topology for a person to try.

Brings everything up, prints the URLs, the CA bundle and an admin key, and tears it all
down on Ctrl-C (or SIGTERM). Needs nginx (scripts/setup-test-deps.sh) and the PostgreSQL
named by HOKUSAI_TEST_POSTGRES_URL (default: the local one)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from .topology import Topology

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # The databases are made (and dropped) exactly as the test suite makes its own.
    os.environ.setdefault("HOKUSAI_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    sys.path.insert(0, str(REPOSITORY / "tests"))
    from helpers import postgres_database

    signal.signal(signal.SIGTERM, _stop)
    workdir = Path(tempfile.mkdtemp(prefix="hokusai-topology-"))
    # Webhook receivers on this machine are allowed, so that one can be tried locally.
    overrides = {
        "gateway": {"HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1"},
        "worker": {"HOKUSAI_WEBHOOK_ALLOW_PRIVATE": "1"},
    }
    topology = Topology(workdir, postgres_database, overrides)
    print(f"starting the topology in {workdir} …", flush=True)
    try:
        with topology.start():
            print(
                f"""
  Gateway (nginx, TLS)   {topology.url}
  MLflow tracking URI    {topology.tracking_uri}
  CA bundle              {topology.ca_bundle}
  Replicas               {", ".join(topology.gateway_urls)}
  MLflow (direct)        {topology.mlflow_url}
  S3 (moto)              {topology.s3_url}  bucket s3://hokusai-artifacts
  Logs                   {topology.logs}
  Admin key              {topology.admin_key}

  export HOKUSAI_API_URL={topology.url} HOKUSAI_CA_BUNDLE={topology.ca_bundle}
  export MLFLOW_TRACKING_URI={topology.tracking_uri}
  export MLFLOW_TRACKING_SERVER_CERT_PATH={topology.ca_bundle}
  export HOKUSAI_API_KEY=… MLFLOW_TRACKING_TOKEN=…   (the admin key, or one it creates)

Ctrl-C stops everything.""",
                flush=True,
            )
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopped; removing", workdir, flush=True)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
