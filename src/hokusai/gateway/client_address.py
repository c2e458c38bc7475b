"""Who is asking: the client's address, and the URL the client used.

A forwarded header is a claim made by whoever sent the request, so it is believed only
from a peer in ``HOKUSAI_TRUSTED_PROXIES``. Proxies append to ``X-Forwarded-For``, so
the right-most entry that is not itself a trusted proxy is the last address a trusted
hop saw; everything left of it was written by the client and proves nothing. Every
address is validated as an IP, so a forged value such as ``<script>`` never reaches the
rate limiter, the audit log or the access log.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence

from hokusai.networks import Network, parse_networks

__all__ = ["Network", "parse_networks"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"
# A host name or IPv4 address, or a bracketed IPv6 address, with an optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?\Z"
)


# Every request parses its peer's address, and a gateway sees few distinct peers (its load
# balancer, its clients): parsing each once saves the gateway a little on every request.
@functools.lru_cache(maxsize=4096)
def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every comma-separated entry of every ``name`` header, in order."""
    return [
        entry.strip()
        for key, value in headers
        if key == name
        for entry in value.decode("latin-1").split(",")
    ]


def peer_is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    if not trusted or peer is None:
        return False
    address = _address(peer)
    return address is not None and _trusted(address, trusted)


def client_address(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network]
) -> str:
    """The client's address, always a valid IP in normal form (or ``unknown``)."""
    peer_address = _address(peer) if peer else None
    if peer_address is None:
        return UNKNOWN
    if not _trusted(peer_address, trusted):
        return str(peer_address)
    # Walk from the peer leftwards while the hops are trusted proxies.
    current = peer_address
    for entry in reversed(_header_values(headers, b"x-forwarded-for")):
        address = _address(entry)
        if address is None:
            # Not written by a trusted proxy: the last trusted hop is all that is known.
            return str(current)
        current = address
        if not _trusted(address, trusted):
            return str(address)
    return str(current)


def forwarded_scheme_and_host(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network]
) -> tuple[str | None, str | None]:
    """``X-Forwarded-Proto`` and ``X-Forwarded-Host`` as the nearest trusted proxy set them."""
    if not peer_is_trusted(peer, trusted):
        return None, None
    headers = list(headers)
    protos = _header_values(headers, b"x-forwarded-proto")
    hosts = _header_values(headers, b"x-forwarded-host")
    scheme = protos[-1].lower() if protos and protos[-1].lower() in ("http", "https") else None
    host = hosts[-1] if hosts and valid_host(hosts[-1]) else None
    return scheme, host


def valid_host(host: str) -> bool:
    """A ``Host`` value fit to be written into a URL shown back to the client."""
    return _HOST.match(host) is not None
