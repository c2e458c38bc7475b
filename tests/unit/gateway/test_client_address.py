"""Who the client is: the peer, unless a trusted proxy says otherwise; always a valid IP."""

from __future__ import annotations

import pytest

from hokusai.gateway.client_address import (
    client_address,
    forwarded_scheme_and_host,
    parse_networks,
)

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1")


def xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v.encode()) for v in values]


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("127.0.0.1", xff("203.0.113.1"), ()) == "127.0.0.1"


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("10.1.2.3", xff("198.51.100.1, 203.0.113.5"), "203.0.113.5"),
        ("10.1.2.3", xff("203.0.113.5, 10.9.9.9"), "203.0.113.5"),
        ("10.1.2.3", xff("198.51.100.1", "203.0.113.5, 10.0.0.2"), "203.0.113.5"),
        ("10.1.2.3", xff("10.0.0.7, 10.0.0.8"), "10.0.0.7"),  # all trusted: the farthest
        ("10.1.2.3", xff("not-an-ip"), "10.1.2.3"),
        ("10.1.2.3", xff("203.0.113.5, <script>, 10.0.0.2"), "10.0.0.2"),
        ("10.1.2.3", xff("[2001:db8::1]"), "2001:db8::1"),
        ("10.1.2.3", [], "10.1.2.3"),
        ("203.0.113.7", xff("198.51.100.1"), "203.0.113.7"),  # untrusted peer
        ("<script>", [], "unknown"),
        (None, [], "unknown"),
    ],
)
def test_right_most_untrusted_entry(
    peer: str | None, headers: list[tuple[bytes, bytes]], client: str
) -> None:
    assert client_address(peer, headers, PROXIES) == client


def test_a_bad_trusted_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'.*HOKUSAI_TRUSTED_PROXIES"):
        parse_networks("127.0.0.1, 10.0.0.300")


def test_forwarded_scheme_and_host_only_from_a_trusted_peer() -> None:
    headers = [
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"registry.example.com"),
    ]
    assert forwarded_scheme_and_host("10.0.0.1", headers, PROXIES) == (
        "https",
        "registry.example.com",
    )
    assert forwarded_scheme_and_host("203.0.113.1", headers, PROXIES) == (None, None)
    forged = [(b"x-forwarded-proto", b"javascript"), (b"x-forwarded-host", b"<script>")]
    assert forwarded_scheme_and_host("10.0.0.1", forged, PROXIES) == (None, None)
