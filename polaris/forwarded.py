"""The client's address behind reverse proxies: `X-Forwarded-For` only from TRUSTED_PROXIES.

A proxy appends the address it received a request from to `X-Forwarded-For`; everything
to the left of that was written by whoever sent the request and proves nothing. So the
client is found from the right: the peer first, then each hop leftwards while the address
so far is a trusted proxy; the first untrusted address is the client. A request whose peer
is not a trusted proxy is its own client, whatever its headers say, so nobody on the LAN
or the container network can pose as another address to dodge per-address limits.

One function for every process: the web process passes aiohttp's peer and header (see
`polaris.services.auth.views.client_ip`), the OCPP server the WebSocket handshake's.
"""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES parsed: comma-separated addresses or CIDR networks; ValueError names a bad one."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network (e.g. 172.30.80.10 or 10.0.0.0/8)") from None
    return tuple(out)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped or addr


def _trusted(addr: Address, trusted: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str | None:
    """The client's address: the right-most untrusted hop of peer + `X-Forwarded-For`.

    `forwarded_for` is every X-Forwarded-For header's value, joined with commas.
    """
    if peer is None:
        return None
    current = _address(peer)
    if current is None or not forwarded_for or not _trusted(current, trusted):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        addr = _address(hop)
        if addr is None:
            break  # garbage left of a trusted hop: the last good address is as far as we can go
        current = addr
        if not _trusted(addr, trusted):
            break
    return str(current)
