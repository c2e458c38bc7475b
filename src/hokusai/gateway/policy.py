"""The route policy: which MLflow endpoint needs which scope. Deny by default.

One table, ``ROUTES``, classifies every endpoint the pinned MLflow serves, as
(methods, MLflow path template) -> ``read`` / ``write`` / ``admin``, or
``HIDDEN(reason)`` for what the gateway does not expose. A request that matches no
row is refused, so an endpoint added by an MLflow upgrade stays closed until
somebody classifies it; ``tests/unit/gateway/test_policy_completeness.py`` fails
on such an upgrade and names the endpoint.

Paths here are MLflow's own (the part after ``/api/mlflow``), in MLflow's template
syntax: ``<name>`` is one path segment, ``<path:name>`` the rest of the path. The
browser UI calls the same handlers under ``/ajax-api/``; a row for ``/api/X``
covers ``/ajax-api/X`` too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from hokusai.keys.scopes import Scope


@dataclass(frozen=True)
class Hidden:
    """An endpoint the gateway does not expose, and why (shown to the caller)."""

    reason: str


Access = Scope | Hidden


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    template: str
    access: Access
    pattern: re.Pattern[str] = field(compare=False, repr=False)


R, W, A = Scope.READ, Scope.WRITE, Scope.ADMIN
UI = Hidden("the MLflow UI's usage telemetry and demo data are not part of this registry platform")
LLM = Hidden("MLflow's AI gateway and LLM features are not part of this registry platform")
JOBS = Hidden("running server-side jobs is not part of this registry platform")


def _route(methods: str, template: str, access: Access) -> Route:
    return Route(frozenset(methods.split()), template, access, _compile(template))


def _compile(template: str) -> re.Pattern[str]:
    regex = ""
    for part in re.split(r"(<[^>]+>|\{[^}]+\})", template):
        if not part:
            continue
        if part.startswith(("<path:", "{")) and (
            part.startswith("<path:") or part.endswith(":path}")
        ):
            regex += r".+"
        elif part.startswith(("<", "{")):
            regex += r"[^/]+"
        else:
            regex += re.escape(part)
    return re.compile(regex + r"\Z")


V2 = "/api/2.0/mlflow"
V3 = "/api/3.0/mlflow"
ART = "/api/2.0/mlflow-artifacts"

ROUTES: tuple[Route, ...] = (
    # ---- server -------------------------------------------------------------
    _route("GET", "/health", R),
    _route("GET", "/version", R),
    _route("GET", f"{V3}/server-info", R),
    _route("GET POST", "/graphql", R),  # queries, and mutations that only search
    # ---- experiments --------------------------------------------------------
    _route("GET", f"{V2}/experiments/get", R),
    _route("GET", f"{V2}/experiments/get-by-name", R),
    _route("GET POST", f"{V2}/experiments/search", R),
    _route("POST", "/api/2.0mlflow/experiments/search-datasets", R),  # sic: MLflow's path
    _route("POST", "/ajax-api/2.0/mlflow/experiments/search-datasets", R),
    _route("POST", f"{V2}/experiments/create", W),
    _route("POST", f"{V2}/experiments/update", W),
    _route("POST", f"{V2}/experiments/delete", W),
    _route("POST", f"{V2}/experiments/restore", W),
    _route("POST", f"{V2}/experiments/set-experiment-tag", W),
    _route("POST", f"{V2}/experiments/delete-experiment-tag", W),
    # ---- runs and metrics ---------------------------------------------------
    _route("GET", f"{V2}/runs/get", R),
    _route("POST", f"{V2}/runs/search", R),
    _route("GET", f"{V2}/metrics/get-history", R),
    _route("GET", f"{V2}/metrics/get-history-bulk-interval", R),
    _route("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", R),
    _route("POST", f"{V2}/runs/create", W),
    _route("POST", "/ajax-api/2.0/mlflow/runs/create-promptlab-run", W),
    _route("POST", f"{V2}/runs/update", W),
    _route("POST", f"{V2}/runs/delete", W),
    _route("POST", f"{V2}/runs/restore", W),
    _route("POST", f"{V2}/runs/log-metric", W),
    _route("POST", f"{V2}/runs/log-parameter", W),
    _route("POST", f"{V2}/runs/log-batch", W),
    _route("POST", f"{V2}/runs/log-model", W),
    _route("POST", f"{V2}/runs/log-inputs", W),
    _route("POST", f"{V2}/runs/outputs", W),
    _route("POST", f"{V2}/runs/set-tag", W),
    _route("POST", f"{V2}/runs/delete-tag", W),
    # ---- logged models ------------------------------------------------------
    _route("GET", f"{V2}/logged-models/<model_id>", R),
    _route("GET", f"{V2}/logged-models/<model_id>/artifacts/directories", R),
    _route("GET", "/ajax-api/2.0/mlflow/logged-models/<model_id>/artifacts/files", R),
    _route("POST", f"{V2}/logged-models/search", R),
    _route("POST", f"{V2}/logged-models", W),
    _route("PATCH DELETE", f"{V2}/logged-models/<model_id>", W),
    _route("POST", f"{V2}/logged-models/<model_id>/params", W),
    _route("PATCH", f"{V2}/logged-models/<model_id>/tags", W),
    _route("DELETE", f"{V2}/logged-models/<model_id>/tags/<tag_key>", W),
    # ---- model registry -----------------------------------------------------
    _route("GET", f"{V2}/registered-models/get", R),
    _route("GET", f"{V2}/registered-models/search", R),
    _route("GET POST", f"{V2}/registered-models/get-latest-versions", R),
    _route("GET", f"{V2}/registered-models/alias", R),
    _route("POST", f"{V2}/registered-models/create", W),
    _route("PATCH", f"{V2}/registered-models/update", W),
    _route("POST", f"{V2}/registered-models/rename", W),
    _route("DELETE", f"{V2}/registered-models/delete", W),
    _route("POST", f"{V2}/registered-models/set-tag", W),
    _route("DELETE", f"{V2}/registered-models/delete-tag", W),
    _route("POST DELETE", f"{V2}/registered-models/alias", W),
    _route("GET", f"{V2}/model-versions/get", R),
    _route("GET", f"{V2}/model-versions/get-download-uri", R),
    _route("GET", f"{V2}/model-versions/search", R),
    _route("GET", "/model-versions/get-artifact", R),
    _route("POST", f"{V2}/model-versions/create", W),
    _route("PATCH", f"{V2}/model-versions/update", W),
    _route("DELETE", f"{V2}/model-versions/delete", W),
    _route("POST", f"{V2}/model-versions/set-tag", W),
    _route("DELETE", f"{V2}/model-versions/delete-tag", W),
    _route("POST", f"{V2}/model-versions/transition-stage", W),
    # MLflow's own server-side webhooks can call any URL: only admins configure them.
    _route("GET POST", f"{V2}/webhooks", A),
    _route("GET PATCH DELETE", f"{V2}/webhooks/<webhook_id>", A),
    _route("POST", f"{V2}/webhooks/<webhook_id>/test", A),
    # ---- artifacts ----------------------------------------------------------
    _route("GET", "/get-artifact", R),
    _route("GET", f"{V2}/artifacts/list", R),
    _route("POST", f"{V2}/artifacts/presigned-download-url", R),
    _route("POST", f"{V2}/artifacts/presigned-upload-url", W),
    _route("POST", "/ajax-api/2.0/mlflow/upload-artifact", W),
    _route("GET", f"{ART}/artifacts", R),
    _route("GET", f"{ART}/artifacts/<path:artifact_path>", R),
    _route("PUT DELETE", f"{ART}/artifacts/<path:artifact_path>", W),
    _route("GET", f"{ART}/presigned/<path:artifact_path>", R),  # a download URL
    _route("POST", f"{ART}/mpu/create/<path:artifact_path>", W),
    _route("POST", f"{ART}/mpu/complete/<path:artifact_path>", W),
    _route("POST", f"{ART}/mpu/abort/<path:artifact_path>", W),
    # ---- traces and assessments ----------------------------------------------
    _route("GET", f"{V2}/traces", R),
    _route("GET", f"{V2}/traces/<request_id>/info", R),
    _route("GET", f"{V2}/unified-traces", R),
    _route("GET", f"{V2}/get-online-trace-details", R),
    _route("GET", "/ajax-api/2.0/mlflow/get-trace-artifact", R),
    _route("GET", "/ajax-api/3.0/mlflow/get-trace-artifact", R),
    _route("POST", f"{V2}/traces", W),
    _route("PATCH", f"{V2}/traces/<request_id>", W),
    _route("PATCH DELETE", f"{V2}/traces/<request_id>/tags", W),
    _route("POST", f"{V2}/traces/delete-traces", W),
    _route("POST", f"{V2}/traces/link-prompts", W),
    _route("POST", f"{V2}/traces/link-to-run", W),
    _route("GET", f"{V3}/traces/get", R),
    _route("GET", f"{V3}/traces/batchGet", R),
    _route("GET", f"{V3}/traces/<trace_id>", R),
    _route("POST", f"{V3}/traces/search", R),
    _route("POST", f"{V3}/traces/batchGetInfos", R),
    _route("POST", f"{V3}/traces/metrics", R),
    _route("POST", f"{V3}/traces/calculate-filter-correlation", R),
    _route("GET", f"{V3}/traces/<trace_id>/assessments/<assessment_id>", R),
    _route("POST", f"{V3}/traces", W),
    _route("POST", "/v1/traces", W),  # OpenTelemetry span ingest
    _route("POST", f"{V3}/traces/delete-traces", W),
    _route("PATCH DELETE", f"{V3}/traces/<trace_id>/tags", W),
    _route("POST", f"{V3}/traces/<trace_id>/assessments", W),
    _route("PATCH DELETE", f"{V3}/traces/<trace_id>/assessments/<assessment_id>", W),
    # ---- datasets, labels, review queues, issues, scorers ----------------------
    _route("GET POST", f"{V3}/datasets/search", R),
    _route("GET", f"{V3}/datasets/<dataset_id>", R),
    _route("GET", f"{V3}/datasets/<dataset_id>/experiment-ids", R),
    _route("GET", f"{V3}/datasets/<dataset_id>/records", R),
    _route("POST", f"{V3}/datasets/create", W),
    _route("DELETE", f"{V3}/datasets/<dataset_id>", W),
    _route("POST DELETE", f"{V3}/datasets/<dataset_id>/records", W),
    _route("POST", f"{V3}/datasets/<dataset_id>/add-experiments", W),
    _route("POST", f"{V3}/datasets/<dataset_id>/remove-experiments", W),
    _route("PATCH", f"{V3}/datasets/<dataset_id>/tags", W),
    _route("DELETE", f"{V3}/datasets/<dataset_id>/tags/<key>", W),
    _route("GET", f"{V3}/label-schemas/get", R),
    _route("GET", f"{V3}/label-schemas/get-by-name", R),
    _route("GET", f"{V3}/label-schemas/list", R),
    _route("POST", f"{V3}/label-schemas/create", W),
    _route("PATCH", f"{V3}/label-schemas/update", W),
    _route("DELETE", f"{V3}/label-schemas/delete", W),
    _route("GET", f"{V3}/review-queues/get", R),
    _route("GET", f"{V3}/review-queues/get-by-name", R),
    _route("GET", f"{V3}/review-queues/list", R),
    _route("GET", f"{V3}/review-queues/items/list", R),
    _route("POST", f"{V3}/review-queues/create", W),
    _route("POST", f"{V3}/review-queues/update", W),
    _route("POST", f"{V3}/review-queues/delete", W),
    _route("POST", f"{V3}/review-queues/get-or-create-user", W),
    _route("POST", f"{V3}/review-queues/items/add", W),
    _route("POST", f"{V3}/review-queues/items/remove", W),
    _route("POST", f"{V3}/review-queues/items/set-status", W),
    _route("GET", f"{V3}/issues/<issue_id>", R),
    _route("POST", f"{V3}/issues/search", R),
    _route("POST", f"{V3}/issues", W),
    _route("PATCH", f"{V3}/issues/<issue_id>", W),
    _route("GET", f"{V3}/scorers/get", R),
    _route("GET", f"{V3}/scorers/list", R),
    _route("GET", f"{V3}/scorers/versions", R),
    _route("GET", f"{V3}/scorers/online-configs", R),
    _route("POST", f"{V3}/scorers/register", W),
    _route("PUT", f"{V3}/scorers/online-config", W),
    _route("DELETE", f"{V3}/scorers/delete", W),
    _route("GET POST", f"{V3}/prompt-optimization/jobs/search", R),
    _route("GET", f"{V3}/prompt-optimization/jobs/<job_id>", R),
    _route("POST", f"{V3}/prompt-optimization/jobs", W),
    _route("DELETE", f"{V3}/prompt-optimization/jobs/<job_id>", W),
    _route("POST", f"{V3}/prompt-optimization/jobs/<job_id>/cancel", W),
    # ---- MCP server registry --------------------------------------------------
    # MLflow routes these with {name:path}: server names look like 'io.github.org/x'.
    _route("GET", f"{V3}/mcp-servers", R),
    _route("GET", f"{V3}/mcp-servers/endpoints", R),
    _route("GET", f"{V3}/mcp-servers/<path:name>", R),
    _route("GET", f"{V3}/mcp-servers/<path:name>/versions", R),
    _route("GET", f"{V3}/mcp-servers/<path:name>/versions/<path:version>", R),
    _route("GET", f"{V3}/mcp-servers/<path:name>/endpoints", R),
    _route("GET", f"{V3}/mcp-servers/<path:name>/endpoints/<endpoint_id>", R),
    _route("GET", f"{V3}/mcp-servers/<path:name>/aliases/<path:alias>", R),
    _route("POST", f"{V3}/mcp-servers", W),
    _route("PATCH DELETE", f"{V3}/mcp-servers/<path:name>", W),
    _route("POST", f"{V3}/mcp-servers/<path:name>/versions", W),
    _route("PATCH DELETE", f"{V3}/mcp-servers/<path:name>/versions/<path:version>", W),
    _route("POST", f"{V3}/mcp-servers/<path:name>/versions/<path:version>/tags", W),
    _route("DELETE", f"{V3}/mcp-servers/<path:name>/versions/<path:version>/tags/<path:key>", W),
    _route("POST", f"{V3}/mcp-servers/<path:name>/endpoints", W),
    _route("PATCH DELETE", f"{V3}/mcp-servers/<path:name>/endpoints/<endpoint_id>", W),
    _route("POST", f"{V3}/mcp-servers/<path:name>/tags", W),
    _route("DELETE", f"{V3}/mcp-servers/<path:name>/tags/<path:key>", W),
    _route("POST", f"{V3}/mcp-servers/<path:name>/aliases", W),
    _route("DELETE", f"{V3}/mcp-servers/<path:name>/aliases/<path:alias>", W),
    # ---- server-wide configuration: admins only --------------------------------
    # Reading them: a workspace's key sees its own only (the gateway answers the list
    # itself, app.py); creating and changing them configures the server.
    _route("GET", f"{V3}/workspaces", R),
    _route("GET", f"{V3}/workspaces/<workspace_name>", R),
    _route("POST", f"{V3}/workspaces", A),
    _route("PATCH DELETE", f"{V3}/workspaces/<workspace_name>", A),
    _route("GET POST PUT PATCH DELETE", f"{V3}/gateway/<path:rest>", A),  # secrets, endpoints
    # ---- the MLflow web UI: its page and assets; its calls are the rows above --------
    # (at the tracking URI, /api/mlflow/, for a person signed in at /login)
    _route("GET", "/", R),
    _route("GET", "/static-files/<path:path>", R),
    _route("GET", "/build/<path:filename>", R),
    # ---- not exposed ------------------------------------------------------------
    _route("GET POST", "/ajax-api/3.0/mlflow/ui-telemetry", UI),
    _route("POST", "/ajax-api/3.0/mlflow/demo/generate", UI),
    _route("POST", "/ajax-api/3.0/mlflow/demo/delete", UI),
    _route("GET POST PUT PATCH", "/ajax-api/3.0/mlflow/assistant/<path:rest>", LLM),
    _route("GET POST", "/ajax-api/2.0/mlflow/gateway-proxy", LLM),
    _route("GET POST", "/gateway/<path:rest>", LLM),
    _route("POST", "/ajax-api/3.0/mlflow/genai/evaluate/invoke", LLM),
    _route("POST", "/ajax-api/3.0/mlflow/scorer/invoke", LLM),
    _route("POST", "/ajax-api/3.0/mlflow/issues/invoke", LLM),
    _route("POST", "/ajax-api/3.0/jobs/", JOBS),  # submit a job
    _route("GET POST PATCH", "/ajax-api/3.0/jobs/<path:rest>", JOBS),
    _route("GET PATCH", "/ajax-api/3.0/mlflow/jobs/<path:rest>", JOBS),
)


# Most requests hit a template without parameters: find those by dictionary.
_EXACT: dict[str, tuple[Route, ...]] = {}
for _r in ROUTES:
    if "<" not in _r.template:
        _EXACT[_r.template] = (*_EXACT.get(_r.template, ()), _r)
_PATTERNED: tuple[Route, ...] = tuple(r for r in ROUTES if "<" in r.template)


@dataclass(frozen=True)
class Decision:
    """The outcome of classifying a request: the matching row, or None (deny)."""

    route: Route | None
    # True when the path exists but not for this method: still answered 404
    # ENDPOINT_NOT_FOUND, with a message that names the method rather than the path.
    path_known: bool


@lru_cache(maxsize=4096)
def classify(method: str, path: str) -> Decision:
    """Find the row for ``method path`` (an MLflow path, prefix already stripped)."""
    candidates = [path]
    if path.startswith("/ajax-api/"):
        candidates.append("/api/" + path[len("/ajax-api/") :])
    # HEAD is a GET without the body; MLflow's routing answers it the same way.
    lookup_method = "GET" if method == "HEAD" else method
    path_known = False
    for candidate in candidates:
        for route in _EXACT.get(candidate, ()) + _PATTERNED:
            if route.pattern.match(candidate):
                if lookup_method in route.methods:
                    return Decision(route, True)
                path_known = True
    return Decision(None, path_known)
