"""The browser of the tests: Debian's Chromium, headless, driven by Playwright, on loopback only.

Playwright's own browser builds are never downloaded (``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD``);
it drives the distribution's ``chromium`` (``scripts/setup-test-deps.sh`` installs it).

Nothing the browser does may leave the machine, so that a page which quietly loads a font or
a script from a CDN fails its test instead of passing on a developer's laptop:

- every non-loopback connection goes to a proxy that is an ``EgressTrap``: it records the
  attempt and refuses it. Chromium never sends loopback addresses through a proxy, so the
  servers of a test are reached directly, and an IP literal cannot slip past a DNS rule;
- host names other than the loopback ones resolve to nothing;
- the background services (component updates, first-run, sync, metrics, field trials,
  safe browsing) are off, and the Google services Chromium asks at start anyway (sign-in,
  component updates) are pointed at a loopback port that refuses them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Page, ViewportSize

CHROMIUM = os.environ.get("HOKUSAI_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_TIMEOUT_MS = 60_000  # 1-2 s usually; more on a loaded 2-core machine
ACTION_TIMEOUT_MS = 30_000  # every wait of a page: a navigation, a selector, a response
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}

# Said again though Playwright passes most of them, so that the list does not depend on its
# version. No --disable-features: Playwright passes its own list (network time, optimization
# hints, search preconnects, media router...), and a second switch would replace it.
QUIET_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-client-side-phishing-detection",
    "--safebrowsing-disable-auto-update",
    "--no-first-run",
    "--no-pings",
    "--metrics-recording-only",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (``data:``, ``blob:`` and ``about:`` stay in the page)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EgressTrap:
    """A proxy on loopback that lets nothing through: it records the request line of every
    connection Chromium tries to make to another machine and answers 403."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # how soon close() is noticed
        # Bound and never listening: a connection to it is refused at once, on loopback.
        self._dead_end = socket.socket()
        self._dead_end.bind(("127.0.0.1", 0))
        self._attempts: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="egress-trap", daemon=True)
        self._thread.start()

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def dead_end_url(self) -> str:
        """A loopback address where every connection is refused."""
        return f"http://127.0.0.1:{self._dead_end.getsockname()[1]}"

    @property
    def attempts(self) -> list[str]:
        """The request lines seen, e.g. ``CONNECT fonts.example:443 HTTP/1.1``."""
        with self._lock:
            return list(self._attempts)

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(5)
                line = b""
                with contextlib.suppress(OSError):
                    line = connection.recv(4096).split(b"\r\n", 1)[0]
                with self._lock:
                    self._attempts.append(line.decode("latin-1") or "(nothing sent)")
                with contextlib.suppress(OSError):
                    connection.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._dead_end.close()
        self._thread.join(timeout=5)


def launch_options(trap: EgressTrap) -> dict[str, Any]:
    """``BrowserType.launch`` keywords for a headless Chromium confined to loopback."""
    # The proxy is a plain switch, not Playwright's ``proxy`` option: that one adds
    # <-loopback> to the bypass list, which would send loopback itself through the proxy.
    confinement = [
        f"--proxy-server={trap.proxy_url}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        # Chromium 156 still asks accounts.google.com for signed-in accounts and the update
        # service for components at start, whatever the switches above say: both are sent to
        # a loopback port that refuses them.
        f"--gaia-url={trap.dead_end_url}",
        f"--component-updater=url-source={trap.dead_end_url}",
        # A page with a password field (the gateway's sign-in page) makes autofill ask
        # Google about the form: sent to the same dead end.
        f"--autofill-server-url={trap.dead_end_url}",
    ]
    return {
        "executable_path": CHROMIUM,
        "headless": True,
        "timeout": LAUNCH_TIMEOUT_MS,
        "args": confinement + QUIET_FLAGS,
    }


def save_screenshot(page: Page, path: Path, *, full_page: bool = False) -> Path:
    """The page as it is rendered now, as a PNG at ``path`` (its folder is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path
