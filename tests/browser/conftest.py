"""Chromium for the browser tests: one headless browser per test module (it starts in a
second or two), a fresh context for each test.

Not one per session: Playwright's synchronous API keeps an asyncio loop running in the
thread while it is open, and a later test in the same worker that calls ``asyncio.run``
(the CLI does) would fail. Closing it with each module ends that loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.chromium import ACTION_TIMEOUT_MS, VIEWPORT, EgressTrap, is_loopback, launch_options


@pytest.fixture(scope="module")
def egress_trap() -> Iterator[EgressTrap]:
    """Where every connection the browser tries to make off this machine ends up."""
    trap = EgressTrap()
    yield trap
    trap.close()


@pytest.fixture(scope="module")
def _playwright() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(_playwright: Playwright, egress_trap: EgressTrap) -> Iterator[Browser]:
    """Headless Chromium, confined to loopback (``chromium.launch_options``)."""
    browser = _playwright.chromium.launch(**launch_options(egress_trap))
    yield browser
    browser.close()


@pytest.fixture
def page_requests() -> list[str]:
    """The URL of every request the test's page made, in order."""
    return []


@pytest.fixture
def page(browser: Browser, page_requests: list[str], egress_trap: EgressTrap) -> Iterator[Page]:
    """A page in a context of its own (no cookies or storage from another test), 1280 by 800.

    Afterwards every request it made must have stayed on loopback, and whatever else tried
    to leave the machine meanwhile must have been one of Chromium's own background services
    (updates, variations), which the trap refused: nothing reached another machine.
    """
    attempts_before = len(egress_trap.attempts)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
    context.on("request", lambda request: page_requests.append(request.url))
    page = context.new_page()
    yield page
    context.close()
    outside = [url for url in page_requests if not is_loopback(url)]
    assert not outside, f"the page requested addresses off this machine: {outside}"
    escaped = [
        attempt
        for attempt in egress_trap.attempts[attempts_before:]
        if not _chromium_background(attempt)
    ]
    assert not escaped, f"the browser tried to leave this machine: {escaped}"


# Hosts Chromium itself calls now and then whatever its switches say (component updates,
# field trials); the trap refuses them like everything else. Anything else a test's page
# caused fails the test.
_BACKGROUND_HOSTS = (".gvt1.com", ".googleapis.com", ".google.com", ".gstatic.com")


def _chromium_background(attempt: str) -> bool:
    """Whether a refused attempt (``CONNECT host:port …``) was Chromium's own."""
    target = attempt.split()[1] if len(attempt.split()) > 1 else ""
    host = target.rsplit(":", 1)[0].split("//")[-1].split("/")[0]
    return host.endswith(_BACKGROUND_HOSTS)
