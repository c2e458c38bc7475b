"""Debian's Chromium, driven by Playwright, renders a page of the real gateway: the offline
API documentation at ``/docs`` (Swagger UI, whose scripts and styles the gateway serves)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.chromium import EgressTrap, save_screenshot
from tests.helpers import RunningGateway, sqlite_gateway

pytestmark = pytest.mark.integration

NOWHERE = "http://127.0.0.1:1"  # the page needs no MLflow


@pytest.fixture(scope="module")
def docs_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with sqlite_gateway(tmp_path_factory.mktemp("browser-docs"), NOWHERE) as running:
        yield running


def test_the_browser_is_headless_chromium(browser: Browser) -> None:
    assert browser.browser_type.name == "chromium"
    assert int(browser.version.split(".")[0]) >= 120, browser.version


def test_the_api_docs_render_from_the_gateway_alone(
    docs_gateway: RunningGateway, page: Page, page_requests: list[str], tmp_path: Path
) -> None:
    answer = page.goto(docs_gateway.url + "/docs")
    assert answer is not None and answer.status == 200
    # Swagger UI draws the title from the OpenAPI schema it fetched: the scripts ran.
    expect(page.locator(".information-container .title")).to_contain_text("Hokusai API")
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    assert page.viewport_size == {"width": 1280, "height": 800}
    assert docs_gateway.url + "/api/v1/openapi.json" in page_requests
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in page_requests)
    shot = save_screenshot(page, tmp_path / "docs.png")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_other_machines_are_reached_only_by_the_trap(
    browser: Browser, egress_trap: EgressTrap
) -> None:
    # An IP literal passes no DNS rule: only the proxy stops it. Not through the ``page``
    # fixture, which fails a test for any such attempt.
    before = len(egress_trap.attempts)
    context = browser.new_context()
    try:
        probe = context.new_page()
        for url in ("http://192.0.2.1/", "https://example.com/"):
            with pytest.raises(PlaywrightError, match=r"net::ERR_"):
                probe.goto(url, timeout=15_000)
    finally:
        context.close()
    # (Chromium tries a refused tunnel more than once.)
    assert set(egress_trap.attempts[before:]) == {
        "GET http://192.0.2.1/ HTTP/1.1",
        "CONNECT example.com:443 HTTP/1.1",
    }
