"""One delivery attempt: a signed POST to a receiver, refused for private addresses.

The destination's address is resolved once, checked, and then connected to directly
(the URL's host still goes in ``Host`` and in TLS SNI): a name that resolves to a
public address for the check and a private one for the connection (DNS rebinding)
cannot get through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import yarl

from hokusai.webhooks.endpoints import EndpointError, parse_destination
from hokusai.webhooks.signing import signature_header

SNIPPET_BYTES = 200


class DestinationRefused(Exception):
    """The destination is not allowed (private address, bad URL)."""


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    response_snippet: str | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver asks never to be called again."""
        return self.status_code == 410


def address_allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address)
    if allow_private:
        return not ip.is_unspecified
    return ip.is_global and not ip.is_multicast


async def resolve_checked(host: str, port: int, allow_private: bool) -> str:
    """One address of ``host`` that may be called; refuse if any answer is forbidden."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise DestinationRefused(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    forbidden = [a for a in addresses if not address_allowed(a, allow_private)]
    if forbidden or not addresses:
        shown = forbidden[0] if forbidden else "no address"
        raise DestinationRefused(
            f"{host} resolves to a private, loopback or link-local address ({shown}); "
            "webhooks to such addresses are refused unless HOKUSAI_WEBHOOK_ALLOW_PRIVATE=1"
        )
    return addresses[0]


def new_session(concurrency: int) -> aiohttp.ClientSession:
    """The connection pool of a dispatcher. aiohttp, not httpx: measured in bench/, it
    costs a quarter of the CPU per delivery. No cookies, no redirects followed, no
    decompression (only the answer's first bytes are kept)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
    )


async def send(
    client: aiohttp.ClientSession,
    *,
    url: str,
    msg_id: str,
    body: str,
    secrets_: list[str],
    allow_private: bool,
    timeout: float,
) -> AttemptResult:
    started = time.perf_counter()
    try:
        # The same reading as when the endpoint was added; a URL stored before that check
        # existed fails here, on this delivery alone.
        destination = parse_destination(url)
    except EndpointError as exc:
        return AttemptResult(None, _ms(started), None, f"invalid endpoint URL: {exc}"[:500])
    host, port = destination.host, destination.port
    # ``timeout`` bounds the whole attempt, resolution included: a per-read timeout is never
    # reached by a receiver that answers a byte at a time.
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            address = await resolve_checked(host, port, allow_private)
    except DestinationRefused as exc:
        return AttemptResult(None, _ms(started), None, str(exc))
    except TimeoutError:
        return AttemptResult(
            None, _ms(started), None, f"cannot resolve {host} within {timeout:g} s"
        )
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{port}"
    direct = yarl.URL(f"{destination.scheme}://{netloc}{destination.target}", encoded=True)
    timestamp = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "host": destination.host_header,
        "user-agent": "hokusai-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(msg_id, timestamp, body, secrets_),
    }
    try:
        async with (
            asyncio.timeout_at(deadline),
            client.post(
                direct,
                data=body.encode(),
                headers=headers,
                allow_redirects=False,
                server_hostname=host if destination.scheme == "https" else None,
            ) as response,
        ):
            snippet = await response.content.read(SNIPPET_BYTES)
            text = snippet.decode("utf-8", "replace")
            error = None
            if 300 <= response.status < 400:
                error = f"redirect to {response.headers.get('location')!r} not followed"
            elif not 200 <= response.status < 300:
                error = f"answered {response.status}"
            return AttemptResult(response.status, _ms(started), text, error)
    except TimeoutError:
        return AttemptResult(None, _ms(started), None, f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # OSError: a socket error aiohttp did not wrap; ValueError: a URL or header aiohttp
        # refuses. Either way this attempt failed, with its reason.
        return AttemptResult(None, _ms(started), None, f"{type(exc).__name__}: {exc}"[:300])


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
