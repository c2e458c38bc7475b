"""The URL space: canonical paths only, which area a path belongs to, and helpful 404s."""

from __future__ import annotations

import pytest

from hokusai.gateway.errors import GatewayError
from hokusai.gateway.urlspace import (
    ADMIN_API_PREFIX,
    MLFLOW_PREFIX,
    Area,
    Target,
    check_canonical,
    locate,
    not_found,
)

ARTIFACTS = b"/api/mlflow/api/2.0/mlflow-artifacts/artifacts"


def refused(raw_path: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        check_canonical(raw_path)
    error = caught.value
    assert error.error_code == "INVALID_PARAMETER_VALUE"
    assert error.status == 400
    assert error.reason == "non_canonical_path"
    assert "canonical" in error.message
    return error


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/api/mlflow/../api/v1/keys",
        b"/api/mlflow/api/2.0/mlflow/runs/..",
        b"/api/mlflow/./api/2.0/mlflow/runs/get",
        b"/api/2.0/mlflow-artifacts/artifacts/1/./model",
        ARTIFACTS + b"/1/abc/../../../etc/passwd",
        b"/..",
        b"/.",
    ],
)
def test_dot_segments_are_refused(raw_path: bytes) -> None:
    assert "'.' or '..' segment" in refused(raw_path).message


@pytest.mark.parametrize(
    "encoded",
    [b"%2f", b"%2F", b"%2e", b"%2E", b"%2e%2e", b"%5c", b"%5C", b"%00", b"%25", b"%252e"],
)
def test_encoded_structure_is_refused(encoded: bytes) -> None:
    message = refused(ARTIFACTS + b"/1/abc/" + encoded + b"/model").message
    assert "percent-encoded" in message
    assert "Send the path without it" in message


def test_encoded_slash_inside_a_segment_is_refused() -> None:
    refused(b"/api/mlflow/api/2.0/mlflow/registered-models/get%2F..%2Fx")


@pytest.mark.parametrize(
    "raw_path",
    [
        b"//api/mlflow/api/2.0/mlflow/runs/get",
        b"/api/mlflow//api/2.0/mlflow/runs/get",
        ARTIFACTS + b"/1/abc//model",
        b"/api/v1/keys//x",
    ],
)
def test_empty_segments_are_refused(raw_path: bytes) -> None:
    assert "'//'" in refused(raw_path).message


@pytest.mark.parametrize(
    "raw_path",
    [b"/api/mlflow\\..\\api/v1/keys", ARTIFACTS + b"/1/abc\\model", b"\\"],
)
def test_backslashes_are_refused(raw_path: bytes) -> None:
    assert "backslash" in refused(raw_path).message


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/api/mlflow/api/2.0/mlflow/runs/get",
        b"/api/2.0/mlflow/experiments/get-by-name",
        b"/api/v1/whoami",
        b"/health",
        b"/",
        ARTIFACTS + b"/1/abc/artifacts/my%20model/MLmodel",
        ARTIFACTS + b"/1/abc/artifacts/my%20model/data%20set%20v2.parquet",
        ARTIFACTS + b"/1/abc/artifacts/model.tar.gz",
        ARTIFACTS + b"/1/abc/artifacts/.hidden/...",
        ARTIFACTS + b"/1/abc/artifacts/weights..bin",
        ARTIFACTS + b"/1/abc/artifacts/%C3%A9t%C3%A9/%2Bplus%3Dequals%40at",
        ARTIFACTS + b"/1/abc/artifacts/trailing/",
        b"/api/mlflow/api/3.0/mlflow/mcp-servers/io.github.org/server/versions",
    ],
)
def test_ordinary_paths_pass(raw_path: bytes) -> None:
    check_canonical(raw_path)  # raises GatewayError if refused


@pytest.mark.parametrize(
    ("path", "mlflow_path"),
    [
        ("/api/mlflow/api/2.0/mlflow/runs/get", "/api/2.0/mlflow/runs/get"),
        ("/api/mlflow/ajax-api/2.0/mlflow/runs/get", "/ajax-api/2.0/mlflow/runs/get"),
        ("/api/mlflow/health", "/health"),
        ("/api/mlflow/", "/"),
        ("/api/mlflow/v1/traces", "/v1/traces"),
        ("/api/mlflow/api/mlflow/api/2.0/mlflow/runs/get", "/api/mlflow/api/2.0/mlflow/runs/get"),
        ("/api/2.0/mlflow/runs/get", "/api/2.0/mlflow/runs/get"),
        ("/api/2.0/mlflow-artifacts/artifacts/1/a b", "/api/2.0/mlflow-artifacts/artifacts/1/a b"),
        ("/api/3.0/mlflow/traces/search", "/api/3.0/mlflow/traces/search"),
    ],
)
def test_mlflow_paths(path: str, mlflow_path: str) -> None:
    target = locate(path)
    assert (target.area, target.mlflow_path) == (Area.MLFLOW, mlflow_path)
    assert target.prefix + target.mlflow_path == path


@pytest.mark.parametrize(
    ("path", "area"),
    [
        ("/api/v1/whoami", Area.ADMIN_API),
        ("/api/v1/keys", Area.ADMIN_API),
        ("/api/v1/keys/key_0123/revoke", Area.ADMIN_API),
        ("/api/v1/openapi.json", Area.ADMIN_API),
        ("/docs", Area.ADMIN_API),
        ("/health", Area.HEALTH),
        ("/ready", Area.READY),
        ("/metrics", Area.METRICS),
        ("/", Area.SIGN_IN),
        ("/login", Area.SIGN_IN),
        ("/logout", Area.SIGN_IN),
        ("/admin", Area.CONSOLE),
        ("/admin/", Area.CONSOLE),
        ("/admin/keys", Area.CONSOLE),
    ],
)
def test_gateway_areas(path: str, area: Area) -> None:
    target = locate(path)
    assert target.area is area
    assert target.mlflow_path == ""


@pytest.mark.parametrize(
    "path",
    [
        "/api/mlflow",  # the tracking URI itself, not an endpoint
        "/api/mlflowx/api/2.0/mlflow/runs/get",
        "/api/2.0/mlflow",
        "/api/2.0/mlflowx/runs/get",
        "/ajax-api/2.0/mlflow/runs/get",  # the UI's twin is reachable only under /api/mlflow
        "/api/v1",
        "/api/v2/keys",
        "/docs/extra",
        "/healthz",
        "/health/",
        "/metrics/x",
        "/get-artifact",
        "/graphql",
        "/administrator",
        "/login/",
    ],
)
def test_everything_else_is_not_found(path: str) -> None:
    assert locate(path) == Target(Area.NOT_FOUND)


def test_prefix_constants_agree_with_locate() -> None:
    assert locate(MLFLOW_PREFIX + "/x").area is Area.MLFLOW
    assert locate(ADMIN_API_PREFIX + "x").area is Area.ADMIN_API


@pytest.mark.parametrize("base_url", ["https://registry.example", "https://registry.example/"])
@pytest.mark.parametrize("path", ["/api/mlflow", "/api/mlflow/"])
def test_not_found_for_the_tracking_uri_itself(path: str, base_url: str) -> None:
    error = not_found(path, base_url)
    assert error.error_code == "ENDPOINT_NOT_FOUND"
    assert error.status == 404
    assert error.reason == "no_such_path"
    assert "is the MLflow tracking URI of this gateway, not an endpoint" in error.message
    assert "MLFLOW_TRACKING_URI=https://registry.example/api/mlflow " in error.message
    assert "//api" not in error.message


@pytest.mark.parametrize(
    "path",
    [
        "/ajax-api/2.0/mlflow/runs/get",
        "/api/2.0/mlflow",
        "/mlflow/api/2.0/mlflow/experiments/search",
        "/mlflow-artifacts/artifacts/1/x",
        "/ajax-api/3.0/mlflow/traces/search",
    ],
)
def test_not_found_for_mlflow_looking_paths_names_the_tracking_uri(path: str) -> None:
    error = not_found(path, "http://127.0.0.1:8080/")
    assert error.status == 404
    assert f"No endpoint at {path}" in error.message
    assert "this gateway serves MLflow under /api/mlflow" in error.message
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:8080/api/mlflow" in error.message
    assert "HOKUSAI_API_URL=http://127.0.0.1:8080 for the SDK" in error.message


@pytest.mark.parametrize("path", ["/", "/admin", "/api/v2/keys", "/wp-login.php"])
def test_not_found_elsewhere_lists_the_url_space(path: str) -> None:
    error = not_found(path, "https://registry.example")
    assert error.status == 404
    assert f"No endpoint at {path}." in error.message
    assert "https://registry.example/api/mlflow" in error.message
    assert "https://registry.example/api/v1 (see /docs)" in error.message
    assert "/health, /ready, /metrics" in error.message
