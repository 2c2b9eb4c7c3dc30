"""CIDR parsing helpers shared by the IPAM modules: strict parsing with operator-readable errors, plus a
fast int-based path for hot loops (socket.inet_pton/inet_ntop are pure conversions, no I/O)."""

from __future__ import annotations

import ipaddress
import socket

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


_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_MAXLEN = {4: 32, 6: 128}

# A parsed CIDR as plain ints, for hot paths: (version, first address, last address, prefix length).
IntCIDR = tuple[int, int, int, int]


def fast_parse(value: str, canonical: bool = True) -> IntCIDR | None:
    """Parse a CIDR string without building ipaddress objects (hot paths of the allocator).

    Returns None for anything unusual (malformed, host bits set, embedded IPv4 in IPv6, and with
    `canonical` text that is not spelled as str(ip_network) would): callers then fall back to
    `parse_cidr`, which gives the precise error or the canonical form.
    """
    addr, sep, plen = value.partition("/")
    if not sep or not plen.isascii() or not plen.isdigit() or (len(plen) > 1 and plen[0] == "0"):
        return None
    version = 6 if ":" in addr else 4
    if version == 6 and "." in addr:
        return None
    fam = _FAMILY[version]
    try:
        packed = socket.inet_pton(fam, addr)
    except OSError:
        return None
    if (
        canonical and socket.inet_ntop(fam, packed) != addr
    ):  # not the canonical spelling: let ipaddress normalise it
        return None
    p = int(plen)
    maxlen = _MAXLEN[version]
    if p > maxlen:
        return None
    lo = int.from_bytes(packed, "big")
    size = 1 << (maxlen - p)
    if lo & (size - 1):
        return None
    return (version, lo, lo + size - 1, p)


def int_cidr(net: Network) -> IntCIDR:
    """The IntCIDR of a network object."""
    lo = int(net.network_address)
    return (net.version, lo, lo + net.num_addresses - 1, net.prefixlen)


def format_cidr(version: int, lo: int, plen: int) -> str:
    """Canonical text of a CIDR (same spelling as str(ipaddress.ip_network(...)))."""
    if version == 4:
        return f"{socket.inet_ntop(socket.AF_INET, lo.to_bytes(4, 'big'))}/{plen}"
    text = socket.inet_ntop(socket.AF_INET6, lo.to_bytes(16, "big"))
    if "." in text:  # libc's embedded-IPv4 forms differ from ipaddress's spelling
        text = str(ipaddress.IPv6Address(lo))
    return f"{text}/{plen}"
