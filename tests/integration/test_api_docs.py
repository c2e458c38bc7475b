"""``/docs`` as a user opens it on a machine without internet: the page and every asset it
loads come from the gateway itself, it offers an Authorize button for the two ways to send
a key, and it documents the error answers the gateway really gives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hokusai.keys.scopes import Scope
from tests.helpers import RunningGateway, sqlite_gateway

pytestmark = pytest.mark.integration

NOWHERE = "http://127.0.0.1:1"  # the Hokusai API needs no MLflow


@pytest.fixture(scope="module")
def docs_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with sqlite_gateway(tmp_path_factory.mktemp("docs"), NOWHERE) as running:
        yield running


def test_the_page_and_its_assets_come_from_the_gateway(docs_gateway: RunningGateway) -> None:
    page = httpx.get(docs_gateway.url + "/docs")
    assert page.status_code == 200, page.text
    assert "swagger-ui" in page.text
    loaded = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    loaded += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
    assert loaded, page.text
    for url in loaded:
        assert url.startswith("/"), f"{url} is not served by the gateway"
    assert "cdn" not in page.text.lower()
    assets = [u for u in loaded if u.startswith("/docs/static/")]
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(assets)
    for url in loaded:
        answer = httpx.get(docs_gateway.url + url)  # without a key
        assert answer.status_code == 200, (url, answer.text[:200])
        assert len(answer.content) > 100, url


def test_other_paths_beside_the_page_stay_closed(docs_gateway: RunningGateway) -> None:
    for path in ("/docs/static/redoc.standalone.js", "/docs/static/", "/docs/anything"):
        answer = httpx.get(docs_gateway.url + path)
        assert answer.status_code == 404, (path, answer.text[:200])
        assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.fixture(scope="module")
def schema(docs_gateway: RunningGateway) -> dict[str, Any]:
    answer = httpx.get(docs_gateway.url + "/api/v1/openapi.json")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_authorize_offers_bearer_and_x_api_key(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == (
        "apiKey",
        "header",
        "X-API-Key",
    )
    assert schema["security"] == [{"bearer": []}, {"apiKey": []}]


def test_errors_are_documented_as_answered(
    schema: dict[str, Any], docs_gateway: RunningGateway
) -> None:
    assert "422" not in str(schema)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error_code", "message"]
    create = schema["paths"]["/api/v1/keys"]["post"]["responses"]
    for status in ("400", "401", "403"):
        content = create[status]["content"]["application/json"]["schema"]
        assert content == {"$ref": "#/components/schemas/Error"}

    # And the gateway answers a bad body exactly so: 400, in MLflow's format.
    admin = docs_gateway.create_key(Scope.ADMIN)
    answer = httpx.post(
        docs_gateway.url + "/api/v1/keys",
        json={"scope": "root"},
        headers={"X-API-Key": admin},
    )
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == set(error["properties"]), body
    assert body["error_code"] in error["properties"]["error_code"]["enum"]
