"""IP networks people write in settings (``10.0.0.0/8, 127.0.0.1``).

Its own small module because the settings validate them at start-up and the gateway
matches peers against them: neither should import the other's machinery.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 127.0.0.1`` -> networks; ValueError naming the entry that is not one."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} in HOKUSAI_TRUSTED_PROXIES is not an IP address or CIDR network "
                "(e.g. 10.0.0.0/8, 127.0.0.1)"
            ) from None
    return tuple(networks)
