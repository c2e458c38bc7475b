"""Metrics and the JSON access log: what an operator sees of every request."""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Set (by ``hokusai serve`` with more than one worker) before any worker imports
# prometheus_client, which then keeps every value in a file of that directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def route_class(area: str, mlflow_path: str = "") -> str:
    """The coarse class of a request, for metrics: a small, fixed set of label values
    (tracking, registry, artifacts, admin, other)."""
    if area in ("admin_api", "console"):
        return "admin"
    if area != "mlflow":
        return "other"
    if "registered-models" in mlflow_path or "model-versions" in mlflow_path:
        return "registry"
    if "artifact" in mlflow_path:
        return "artifacts"
    return "tracking"


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own (one per app).

    With several worker processes (``hokusai serve --workers N`` sets
    ``PROMETHEUS_MULTIPROC_DIR``) each process writes its values to files in that directory
    and ``/metrics`` sums the files of all of them, whichever worker answers.
    """

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hokusai_requests",
            "Requests answered, by route class, method, status and the key's workspace "
            "('platform' for a platform admin key, empty before a key is known).",
            ["route_class", "method", "status", "workspace"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hokusai_request_duration_seconds",
            "Time to the end of the answer.",
            ["route_class"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.upstream_latency = Histogram(
            "hokusai_upstream_duration_seconds",
            "Time MLflow took to start its answer.",
            ["route_class"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.upstream_errors = Counter(
            "hokusai_upstream_errors",
            "MLflow could not be reached or answered 5xx, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "hokusai_auth_failures",
            "Refused credentials, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "hokusai_rate_limited",
            "Requests refused by a rate limit, by limit.",
            ["limit"],
            registry=self.registry,
        )
        self.events_emitted = Counter(
            "hokusai_events_emitted",
            "Registry events written to the outbox, by type and workspace.",
            ["type", "workspace"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "hokusai_webhook_deliveries",
            "Webhook delivery attempts, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.dispatch_lag = Gauge(
            "hokusai_webhook_dispatch_lag_seconds",
            "How long the oldest due webhook delivery has waited.",
            registry=self.registry,
            # Every worker measures the same store: the latest measurement is the answer.
            multiprocess_mode="mostrecent",
        )
        self.mlflow_writes_waiting = Gauge(
            "hokusai_mlflow_writes_waiting",
            "MLflow writes waiting for their turn in the write queue (gateway/write_queue.py).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.rate_limit_fallbacks = Counter(
            "hokusai_rate_limit_fallbacks",
            "Per-key limit decisions made by this replica alone: the shared store did not answer.",
            registry=self.registry,
        )
        self.resolution_cache_hits = Counter(
            "hokusai_resolution_cache_hits",
            "Model resolution reads answered from the gateway's cache (resolution_cache.py).",
            registry=self.registry,
        )
        self.resolution_cache_misses = Counter(
            "hokusai_resolution_cache_misses",
            "Model resolution reads sent to MLflow: not cached, too old, or out of sync.",
            registry=self.registry,
        )
        self.resolution_cache_invalidations = Counter(
            "hokusai_resolution_cache_invalidations",
            "Invalidations of the resolution cache, by scope (one model's answers, or all).",
            ["scope"],
            registry=self.registry,
        )
        self.resolution_cache_entries = Gauge(
            "hokusai_resolution_cache_entries",
            "Answers held by the resolution cache (summed over worker processes).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.resolution_cache_bytes = Gauge(
            "hokusai_resolution_cache_bytes",
            "Bytes of answers held by the resolution cache (summed over worker processes).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.artifact_cache_requests = Counter(
            "hokusai_artifact_cache_requests",
            "Artifact downloads of READY versions' files (artifact_cache.py), by result: hit "
            "(served from disk), filled (waited for the one fill), passed (proxied: too "
            "large, not named by the version's manifest, or MLflow did not answer 200), "
            "not_modified (If-None-Match), no_manifest (proxied: a version made before "
            "manifests, whose files cannot be checked), refused (the file or its manifest "
            "does not match what the version records: nothing was served).",
            ["result"],
            registry=self.registry,
        )
        self.artifact_cache_fills = Counter(
            "hokusai_artifact_cache_fills",
            "Files the artifact cache read from MLflow, by outcome: kept, not_kept (not a "
            "complete 200 answer of announced length, or no room), or mismatched (not the "
            "file its version's manifest records: changed in the artifact store).",
            ["outcome"],
            registry=self.registry,
        )
        self.artifact_cache_evictions = Counter(
            "hokusai_artifact_cache_evictions",
            "Files the artifact cache removed to stay within its size limit.",
            registry=self.registry,
        )
        self.artifact_cache_bytes = Gauge(
            "hokusai_artifact_cache_bytes",
            "Bytes of files held (or being filled) by the artifact cache (summed over worker "
            "processes).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        for result in ("hit", "filled", "passed", "not_modified", "no_manifest", "refused"):
            self.artifact_cache_requests.labels(result)
        for outcome in ("kept", "not_kept", "mismatched"):
            self.artifact_cache_fills.labels(outcome)
        for outcome in ("delivered", "failed", "dead", "gone"):
            self.webhook_deliveries.labels(outcome)
        for kind in ("refused", "timeout", "protocol", "5xx"):
            self.upstream_errors.labels(kind)
        for reason in (
            "missing",
            "malformed",
            "unknown",
            "revoked",
            "expired",
            # What refused a known key (hokusai.authorization's refused_by values).
            "role",
            "workspace",
            "model_pattern",
            "protected_alias",
            "promotion_gate",
            "signed_versions",
            "source",
        ):
            self.auth_failures.labels(reason)
        for limit in ("key", "auth_failures"):
            self.rate_limited.labels(limit)
        for scope in ("model", "all"):
            self.resolution_cache_invalidations.labels(scope)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined)


access_log = logging.getLogger("hokusai.access")
