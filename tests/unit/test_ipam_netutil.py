"""netutil: the fast int-based CIDR parse/format agree with the ipaddress module (hypothesis)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routectl.ipam.errors import InvalidCIDRError
from routectl.ipam.netutil import fast_parse, format_cidr, int_cidr, parse_cidr


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    v6 = draw(st.booleans())
    maxlen = 128 if v6 else 32
    plen = draw(st.integers(0, maxlen))
    addr = draw(st.integers(0, (1 << maxlen) - 1))
    for k in range(maxlen // 16 if v6 else 0):  # zero runs exercise '::' compression
        if draw(st.booleans()):
            addr &= ~(0xFFFF << (16 * k))
    addr &= ~((1 << (maxlen - plen)) - 1)
    cls = ipaddress.IPv6Network if v6 else ipaddress.IPv4Network
    return cls((addr, plen))


@settings(max_examples=500, deadline=None)
@given(networks())
def test_fast_parse_and_format_match_ipaddress(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    text = str(net)
    parsed = fast_parse(text)
    assert parsed is None or parsed == int_cidr(net)  # None only means "use the slow path"
    assert format_cidr(net.version, int(net.network_address), net.prefixlen) == text


@pytest.mark.parametrize(
    "text", ["10.0.0.1/8", "010.0.0.0/8", "10.0.0.0/08", "10.0.0.0/33", "FD00::/48", "fd00:0::/48",
             "::ffff:1.2.3.4/128", "10.0.0.0", "x/8", "10.0.0.0/²"],
)  # fmt: skip
def test_fast_parse_refuses_unusual_text(text: str) -> None:
    assert fast_parse(text) is None


def test_fast_parse_non_canonical_when_allowed() -> None:
    assert fast_parse("FD00::/48", canonical=False) == int_cidr(ipaddress.ip_network("fd00::/48"))
    assert fast_parse("10.0.0.1/8", canonical=False) is None  # host bits are never accepted


def test_parse_cidr_messages() -> None:
    with pytest.raises(InvalidCIDRError, match=r"did you mean 10\.0\.0\.0/8"):
        parse_cidr("10.0.0.1/8")
    with pytest.raises(InvalidCIDRError, match="not a CIDR"):
        parse_cidr(42)
