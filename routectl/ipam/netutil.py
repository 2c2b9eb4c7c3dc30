"""Small CIDR parsing helpers shared by the IPAM modules (strict parsing with operator-readable errors)."""

from __future__ import annotations

import ipaddress

from routectl.ipam.errors import InvalidCIDRError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(value: object, what: str = "CIDR") -> Network:
    """Parse `value` as a network with no host bits set; raise InvalidCIDRError naming `what` otherwise."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise InvalidCIDRError(
            f"{what} {value!r} is not a CIDR: expected an address/prefix such as 10.244.0.0/16 or fd00::/56"
        )
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise InvalidCIDRError(
                f"{what} {value!r} is not a valid CIDR ({exc}); expected e.g. 10.244.0.0/16 or fd00::/56"
            ) from None
        raise InvalidCIDRError(f"{what} {value} has host bits set; did you mean {loose}?") from None


def family(net: Network) -> int:
    """Return 4 or 6."""
    return net.version


def overlaps(a: Network, b: Network) -> bool:
    """True when the two networks share at least one address (False across families)."""
    return a.version == b.version and a.overlaps(b)
