"""The route table against the installed MLflow: every endpoint MLflow serves is classified,
every row of the table still exists, and the important rows say what they should.

An MLflow upgrade that adds, renames or removes an endpoint fails here with the list of
endpoints (or rows) to look at in ``hokusai.gateway.policy.ROUTES``.

Longer than most test modules (about 420 lines): the table is checked in both directions
(MLflow's endpoints against its rows and back), and then row by row for what matters.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from mlflow.server import app as flask_app
from mlflow.server import handlers
from mlflow.server.fastapi_app import create_fastapi_app
from starlette.routing import Mount

from hokusai.gateway.policy import ROUTES, Hidden, Route, classify
from hokusai.keys.scopes import Scope

# Flask adds OPTIONS to every rule to answer CORS preflights. The gateway serves no
# browser and classifies no OPTIONS request (see test_options_is_not_classified).
AUTOMATIC_METHODS = frozenset({"OPTIONS"})
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_FLASK_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_STARLETTE_VARIABLE = re.compile(r"\{(?P<name>\w+)(?::(?P<converter>\w+))?\}")


def _sample_value(name: str, converter: str | None) -> str:
    if converter == "path":
        # A path parameter is sampled with a slash in it: that is what it is for.
        return f"{name}-1/{name}-2"
    if converter == "int":
        return "7"
    if converter == "float":
        return "1.5"
    if converter == "uuid":
        return "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    if converter in (None, "default", "string", "str"):
        return f"{name}-1"
    raise AssertionError(f"no sample value for the path converter {converter!r} (in {name})")


def sample_path(template: str) -> str:
    """A concrete path that ``template`` (Flask or Starlette syntax) matches."""

    def substitute(match: re.Match[str]) -> str:
        return _sample_value(match["name"], match["converter"])

    path = _FLASK_VARIABLE.sub(substitute, template)
    return _STARLETTE_VARIABLE.sub(substitute, path)


@dataclass(frozen=True, order=True)
class Endpoint:
    method: str
    template: str

    @property
    def path(self) -> str:
        return sample_path(self.template)

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def _fastapi_endpoints(routes: Iterable[object], problems: list[str]) -> set[Endpoint]:
    found: set[Endpoint] = set()
    for route in routes:
        effective_contexts = getattr(route, "effective_route_contexts", None)
        if effective_contexts is not None:
            # An included router: its routes with the include prefix applied.
            for context in effective_contexts():
                methods = getattr(context.original_route, "methods", None)
                if not methods:
                    problems.append(f"a route without methods: {context.path}")
                    continue
                found |= {Endpoint(m, context.path) for m in methods}
        elif isinstance(route, Mount):
            if getattr(route.app, "app", None) is flask_app:
                continue  # the Flask app: enumerated from its url_map
            if route.routes:
                nested = _fastapi_endpoints(route.routes, problems)
                found |= {Endpoint(e.method, route.path + e.template) for e in nested}
            else:
                problems.append(f"an opaque mount at {route.path!r}: {route.app!r}")
        elif getattr(route, "methods", None) and getattr(route, "path", None):
            found |= {Endpoint(m, route.path) for m in route.methods}  # type: ignore[attr-defined]
        else:
            problems.append(f"a route of an unknown kind: {route!r}")
    return found


@dataclass(frozen=True)
class Installed:
    """What the installed MLflow serves, each endpoint with where it was found."""

    sources: dict[Endpoint, set[str]]
    openapi: set[Endpoint]
    fastapi: set[Endpoint]
    walk_problems: list[str]

    @property
    def endpoints(self) -> list[Endpoint]:
        return sorted(self.sources)


@pytest.fixture(scope="module")
def installed() -> Installed:
    sources: dict[Endpoint, set[str]] = defaultdict(set)
    for path, _handler, methods in handlers.get_endpoints():
        for method in methods:
            sources[Endpoint(method, path)].add("handlers.get_endpoints()")
    for rule in flask_app.url_map.iter_rules():
        for method in (rule.methods or set()) - AUTOMATIC_METHODS:
            sources[Endpoint(method, rule.rule)].add("Flask url_map")
    fastapi = create_fastapi_app(flask_app)
    openapi = {
        Endpoint(method.upper(), path)
        for path, operations in fastapi.openapi()["paths"].items()
        for method in operations
    }
    for endpoint in openapi:
        sources[endpoint].add("FastAPI openapi()")
    problems: list[str] = []
    routes = _fastapi_endpoints(fastapi.routes, problems)
    for endpoint in routes:
        sources[endpoint].add("FastAPI routes")
    return Installed(dict(sources), openapi, routes, problems)


def _report(title: str, lines: Iterable[str]) -> str:
    lines = list(lines)
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_the_enumeration_sees_every_part_of_mlflow(installed: Installed) -> None:
    """Guards the test itself: an enumeration that finds little would pass vacuously."""
    assert not installed.walk_problems, _report(
        "FastAPI routes this test cannot enumerate", installed.walk_problems
    )
    assert len(installed.endpoints) > 400
    by_source: dict[str, int] = defaultdict(int)
    for found_in in installed.sources.values():
        for source in found_in:
            by_source[source] += 1
    assert by_source["handlers.get_endpoints()"] > 200
    assert by_source["Flask url_map"] > by_source["handlers.get_endpoints()"]
    assert by_source["FastAPI openapi()"] > 20
    anchors = [
        Endpoint("POST", "/api/2.0/mlflow/registered-models/create"),
        Endpoint("GET", "/api/2.0/mlflow/registered-models/get"),
        Endpoint("HEAD", "/api/2.0/mlflow/registered-models/get"),
        Endpoint("GET", "/static-files/<path:path>"),
        Endpoint("POST", "/v1/traces"),
        Endpoint("PUT", "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}"),
    ]
    for anchor in anchors:
        assert anchor in installed.sources, anchor


def test_the_route_walk_covers_the_openapi_schema(installed: Installed) -> None:
    # The schema writes {name:path} as {name}: compare without converters.
    def plain(endpoint: Endpoint) -> Endpoint:
        return Endpoint(endpoint.method, re.sub(r"\{(\w+):\w+\}", r"{\1}", endpoint.template))

    walked = {plain(e) for e in installed.fastapi}
    missing = sorted(str(e) for e in installed.openapi if plain(e) not in walked)
    assert not missing, _report("schema endpoints the route walk did not find", missing)


def test_every_installed_endpoint_is_classified(installed: Installed) -> None:
    unclassified = [
        f"{e}    (sample {e.path}; from {', '.join(sorted(installed.sources[e]))})"
        for e in installed.endpoints
        if classify(e.method, e.path).route is None
    ]
    assert not unclassified, _report(
        "MLflow endpoints the route policy does not classify; add rows to "
        "hokusai.gateway.policy.ROUTES",
        unclassified,
    )


def access(method: str, path: str) -> Scope | Hidden | None:
    route = classify(method, path).route
    return None if route is None else route.access


def _twins(path: str) -> list[str]:
    if path.startswith("/ajax-api/"):
        return [path, "/api/" + path[len("/ajax-api/") :]]
    return [path]


def _matches(route: Route, endpoint: Endpoint) -> bool:
    method = "GET" if endpoint.method == "HEAD" else endpoint.method
    if method not in route.methods:
        return False
    return any(route.pattern.match(candidate) for candidate in _twins(endpoint.path))


def test_every_row_matches_an_installed_endpoint(installed: Installed) -> None:
    stale = [
        f"{' '.join(sorted(route.methods))} {route.template}"
        for route in ROUTES
        if not any(_matches(route, e) for e in installed.endpoints)
    ]
    assert not stale, _report(
        "rows of hokusai.gateway.policy.ROUTES that no installed MLflow endpoint matches", stale
    )


def test_head_is_classified_as_get(installed: Installed) -> None:
    gets = [e for e in installed.endpoints if e.method == "GET"]
    assert len(gets) > 100
    differ = [str(e) for e in gets if classify("HEAD", e.path) != classify("GET", e.path)]
    assert not differ, _report("endpoints where HEAD and GET are classified apart", differ)
    assert access("HEAD", "/api/2.0/mlflow/runs/get") is Scope.READ
    assert classify("HEAD", "/api/2.0/mlflow/runs/create").route is None


def test_ajax_api_twins_inherit_the_api_rule(installed: Installed) -> None:
    paths = {e.template for e in installed.endpoints}
    pairs = [
        e
        for e in installed.endpoints
        if e.template.startswith("/ajax-api/")
        and "/api/" + e.template[len("/ajax-api/") :] in paths
    ]
    assert len(pairs) > 150
    differ = []
    for endpoint in pairs:
        api_path = "/api/" + endpoint.path[len("/ajax-api/") :]
        if classify(endpoint.method, endpoint.path) != classify(endpoint.method, api_path):
            differ.append(str(endpoint))
    assert not differ, _report("ajax-api endpoints classified unlike their /api twin", differ)


def test_no_mutating_endpoint_needs_only_read_unless_it_is_a_query(installed: Installed) -> None:
    # POST is also how MLflow sends long searches; PUT, PATCH and DELETE always change things.
    weak = [
        str(e)
        for e in installed.endpoints
        if e.method in {"PUT", "PATCH", "DELETE"}
        and (decision := classify(e.method, e.path)).route is not None
        and decision.route.access is Scope.READ
    ]
    assert not weak, _report("PUT/PATCH/DELETE endpoints that need only the read scope", weak)
    read_posts = [
        e.template
        for e in installed.endpoints
        if e.method == "POST" and access(e.method, e.path) is Scope.READ
    ]
    looks_like_a_query = re.compile(
        r"search|get|list|metrics|presigned-download-url|calculate|graphql|batchGet"
    )
    odd = [t for t in read_posts if not looks_like_a_query.search(t)]
    assert not odd, _report("POST endpoints that need only read but do not look like queries", odd)


V2 = "/api/2.0/mlflow"
V3 = "/api/3.0/mlflow"
ART = "/api/2.0/mlflow-artifacts"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{V2}/experiments/get-by-name"),
        ("GET", f"{V2}/experiments/search"),
        ("POST", f"{V2}/experiments/search"),
        ("GET", f"{V2}/runs/get"),
        ("POST", f"{V2}/runs/search"),
        ("GET", f"{V2}/metrics/get-history"),
        ("GET", f"{V2}/registered-models/get"),
        ("GET", f"{V2}/registered-models/search"),
        ("GET", f"{V2}/registered-models/alias"),
        ("POST", f"{V2}/registered-models/get-latest-versions"),
        ("GET", f"{V2}/model-versions/get"),
        ("GET", f"{V2}/model-versions/get-download-uri"),
        ("GET", f"{V2}/model-versions/search"),
        ("GET", f"{V2}/artifacts/list"),
        ("GET", f"{ART}/artifacts"),
        ("GET", f"{ART}/artifacts/1/abc/artifacts/model/MLmodel"),
        ("GET", "/get-artifact"),
        ("GET", "/model-versions/get-artifact"),
        ("POST", f"{V3}/traces/search"),
        ("GET", f"{V3}/traces/tr-123"),
        ("GET", "/health"),
        ("GET", "/version"),
        ("GET", f"{V3}/mcp-servers/io.github.org/server/versions/1.0.0"),
        ("GET", "/ajax-api/2.0/mlflow/registered-models/get"),
    ],
)
def test_reads_need_read(method: str, path: str) -> None:
    assert access(method, path) is Scope.READ


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{V2}/registered-models/create"),
        ("PATCH", f"{V2}/registered-models/update"),
        ("POST", f"{V2}/registered-models/rename"),
        ("DELETE", f"{V2}/registered-models/delete"),
        ("POST", f"{V2}/registered-models/set-tag"),
        ("DELETE", f"{V2}/registered-models/delete-tag"),
        ("POST", f"{V2}/registered-models/alias"),
        ("DELETE", f"{V2}/registered-models/alias"),
        ("POST", f"{V2}/model-versions/create"),
        ("PATCH", f"{V2}/model-versions/update"),
        ("DELETE", f"{V2}/model-versions/delete"),
        ("POST", f"{V2}/model-versions/set-tag"),
        ("POST", f"{V2}/model-versions/transition-stage"),
        ("POST", f"{V2}/experiments/create"),
        ("POST", f"{V2}/runs/create"),
        ("POST", f"{V2}/runs/log-batch"),
        ("PUT", f"{ART}/artifacts/1/abc/artifacts/model/model.pkl"),
        ("DELETE", f"{ART}/artifacts/1/abc/artifacts/model/model.pkl"),
        ("POST", f"{ART}/mpu/create/1/abc/artifacts/big.bin"),
        ("POST", "/v1/traces"),
        ("PATCH", f"{V3}/mcp-servers/io.github.org/server"),
        ("POST", "/ajax-api/2.0/mlflow/registered-models/create"),
    ],
)
def test_writes_need_write(method: str, path: str) -> None:
    assert access(method, path) is Scope.WRITE


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{V2}/webhooks"),
        ("POST", f"{V2}/webhooks"),
        ("GET", f"{V2}/webhooks/wh-123"),
        ("PATCH", f"{V2}/webhooks/wh-123"),
        ("DELETE", f"{V2}/webhooks/wh-123"),
        ("POST", f"{V2}/webhooks/wh-123/test"),
        ("HEAD", f"{V2}/webhooks"),
        ("POST", "/ajax-api/2.0/mlflow/webhooks"),
        ("GET", f"{V3}/gateway/secrets/list"),
        ("POST", f"{V3}/gateway/secrets/create"),
        ("GET", "/ajax-api/3.0/mlflow/gateway/secrets/config"),
        ("POST", f"{V3}/workspaces"),
        ("DELETE", f"{V3}/workspaces/team-a"),
    ],
)
def test_server_configuration_needs_admin(method: str, path: str) -> None:
    assert access(method, path) is Scope.ADMIN


@pytest.mark.parametrize("path", ["/", "/static-files/static/js/main.js", "/build/index.html"])
def test_the_mlflow_ui_page_and_assets_need_a_read_key(path: str) -> None:
    """Served at the tracking URI to a signed-in person (or any key): a page that only
    reads; what it then does goes through the rows of the API it calls."""
    assert access("GET", path) is Scope.READ


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        ("POST", "/ajax-api/3.0/mlflow/ui-telemetry", "telemetry"),
        ("POST", "/gateway/openai/v1/chat/completions", "AI gateway"),
        ("GET", "/gateway/mlflow/v1/models", "AI gateway"),
        ("POST", "/gateway/proxy/my-endpoint/v1/embeddings", "AI gateway"),
        ("POST", "/ajax-api/2.0/mlflow/gateway-proxy", "AI gateway"),
        ("POST", "/ajax-api/3.0/mlflow/assistant/message", "AI gateway"),
        ("POST", "/ajax-api/3.0/mlflow/scorer/invoke", "AI gateway"),
        ("POST", "/ajax-api/3.0/jobs/", "jobs"),
        ("PATCH", "/ajax-api/3.0/jobs/cancel/job-1", "jobs"),
        ("GET", "/ajax-api/3.0/mlflow/jobs/job-1", "jobs"),
    ],
)
def test_ui_telemetry_llm_gateway_and_jobs_are_hidden(method: str, path: str, reason: str) -> None:
    hidden = access(method, path)
    assert isinstance(hidden, Hidden)
    assert reason in hidden.reason


@pytest.mark.parametrize(
    ("method", "path", "path_known"),
    [
        ("GET", f"{V2}/no-such-endpoint", False),
        ("GET", "/api/mlflow/api/2.0/mlflow/runs/get", False),  # prefix twice
        ("GET", "/api/2.0/mlflow/runs/get/extra", False),
        ("PUT", f"{V2}/runs/get", True),
        ("GET", f"{V2}/runs/create", True),
        ("DELETE", f"{V2}/webhooks", True),
        ("TRACE", f"{V2}/runs/get", True),
    ],
)
def test_unknown_endpoints_and_methods_are_denied(method: str, path: str, path_known: bool) -> None:
    decision = classify(method, path)
    assert decision.route is None
    assert decision.path_known is path_known


def test_options_is_not_classified(installed: Installed) -> None:
    classified = [
        str(e) for e in installed.endpoints if classify("OPTIONS", e.path).route is not None
    ]
    assert not classified, _report("endpoints classified for OPTIONS", classified)


def test_templates_match_whole_paths_only() -> None:
    # A row's pattern is anchored at both ends: a known path as a prefix or suffix of
    # another path does not inherit its access.
    assert classify("GET", f"{V2}/registered-models/get-evil").route is None
    assert classify("GET", f"/x{V2}/registered-models/get").route is None
    assert classify("GET", f"{V2}/webhooks/wh-1/extra").route is None
