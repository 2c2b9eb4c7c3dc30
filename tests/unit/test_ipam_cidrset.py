"""CidrSet: table tests per method and hypothesis properties (no overlap, alignment, round-robin)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routectl.ipam.cidrset import CidrSet
from routectl.ipam.errors import CIDRExhaustedError, InvalidCIDRError, IPAMError


@pytest.mark.parametrize(
    ("cidr", "mask", "total"),
    [
        ("10.244.0.0/16", 24, 256),
        ("10.0.0.0/8", 24, 65536),
        ("10.244.0.0/24", 24, 1),
        ("10.244.0.0/30", 32, 4),
        ("fd00:10:244::/56", 64, 256),
        ("fd00::/48", 64, 65536),
        ("2001:db8::/112", 128, 65536),
    ],
)
def test_sizes(cidr: str, mask: int, total: int) -> None:
    s = CidrSet(cidr, mask)
    assert (s.total, s.capacity, s.free, s.used, s.reserved) == (total, total, total, 0, 0)
    assert s.state_bytes == (total + 7) // 8  # at most 1 bit of state per block (rounded to a byte)


@pytest.mark.parametrize(
    ("cidr", "mask", "fragment"),
    [
        ("10.244.0.1/16", 24, "host bits set; did you mean 10.244.0.0/16"),
        ("10.244.0.0", 24, "not a CIDR"),
        ("banana/8", 24, "not a valid CIDR"),
        ("10.244.0.0/33", 24, "not a valid CIDR"),
        ("10.244.0.0/16", 8, "shorter than the CIDR's /16 prefix"),
        ("10.0.0.0/8", 25, "2^17 blocks; at most 2^16"),
        ("fd00::/32", 64, "use a node mask of at most /48"),
        ("10.0.0.0/8", 0, "out of range"),
        ("10.0.0.0/8", 33, "out of range"),
    ],
)
def test_constructor_refuses_with_actionable_message(cidr: str, mask: int, fragment: str) -> None:
    with pytest.raises(InvalidCIDRError) as exc:
        CidrSet(cidr, mask)
    assert fragment in str(exc.value)
    assert isinstance(exc.value, IPAMError) and isinstance(exc.value, ValueError)


def test_too_many_blocks_message_says_what_to_change() -> None:
    with pytest.raises(InvalidCIDRError) as exc:
        CidrSet("fd00::/32", 64)
    msg = str(exc.value)
    assert "2^32 blocks" in msg and "/48" in msg and "smaller CIDRs" in msg


def test_allocate_in_order_then_exhausted() -> None:
    s = CidrSet("10.0.0.0/22", 24)
    got = [str(s.allocate()) for _ in range(4)]
    assert got == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
    assert (s.used, s.free) == (4, 0)
    with pytest.raises(CIDRExhaustedError, match="no free /24 block left"):
        s.allocate()


def test_round_robin_does_not_reuse_just_released_block() -> None:
    s = CidrSet("10.0.0.0/22", 24)
    first = s.allocate()
    s.release(first)
    assert s.allocate() != first  # the cursor moved on (kube cidr_set nextCandidate)
    assert str(s.allocate()) == "10.0.2.0/24"
    assert str(s.allocate()) == "10.0.3.0/24"
    assert s.allocate() == first  # wraps around only when the rest is used


def test_allocate_skips_occupied_blocks_and_wraps() -> None:
    s = CidrSet("10.0.0.0/20", 24)
    for i in range(16):
        if i != 13:
            s.occupy(f"10.0.{i}.0/24")
    s.next_candidate = 14
    assert str(s.allocate()) == "10.0.13.0/24"  # wrapped past the end to the only hole


def test_ipv6_allocate_occupy_release() -> None:
    s = CidrSet("fd00:10:244::/56", 64)
    assert s.occupy("fd00:10:244::/64") is True
    assert str(s.allocate()) == "fd00:10:244:1::/64"
    assert s.is_used("fd00:10:244::/64")
    assert s.release("fd00:10:244::/64") is True
    assert not s.is_used("fd00:10:244::/64")
    assert s.family == 6 and s.used == 1


def test_occupy_release_idempotent() -> None:
    s = CidrSet("10.0.0.0/16", 24)
    assert s.occupy("10.0.5.0/24") is True
    assert s.occupy("10.0.5.0/24") is False
    assert s.used == 1
    assert s.release("10.0.5.0/24") is True
    assert s.release("10.0.5.0/24") is False
    assert s.used == 0


@pytest.mark.parametrize(
    ("net", "fragment"),
    [
        ("10.1.0.0/24", "outside 10.0.0.0/16"),
        ("10.0.0.0/8", "outside 10.0.0.0/16"),
        ("10.0.0.0/23", "misaligned"),
        ("10.0.0.128/25", "misaligned"),
        ("10.0.0.1/24", "host bits"),
        ("fd00::/64", "IPv6 but 10.0.0.0/16 is IPv4"),
        ("nonsense", "not a CIDR"),
    ],
)
def test_occupy_release_is_used_are_checked(net: str, fragment: str) -> None:
    s = CidrSet("10.0.0.0/16", 24)
    for op in (s.occupy, s.release, s.is_used):
        with pytest.raises(InvalidCIDRError, match=fragment):
            op(net)
    assert s.used == 0


@pytest.mark.parametrize(
    ("net", "inside"),
    [
        ("10.0.3.0/24", True),
        ("10.0.0.0/16", True),
        ("10.0.0.128/25", True),
        ("10.0.0.0/15", False),
        ("10.1.0.0/24", False),
        ("fd00::/64", False),
    ],
)
def test_contains(net: str, inside: bool) -> None:
    assert CidrSet("10.0.0.0/16", 24).contains(net) is inside


def test_reserved_blocks_never_handed_out_and_not_counted() -> None:
    s = CidrSet("10.0.0.0/22", 24)
    assert s.reserve("10.0.1.128/25") == 1
    assert s.reserve("10.0.2.0/23") == 2
    assert (s.total, s.reserved, s.capacity, s.used, s.free) == (4, 3, 1, 0, 1)
    assert str(s.allocate()) == "10.0.0.0/24"
    with pytest.raises(CIDRExhaustedError):
        s.allocate()
    assert s.release("10.0.2.0/24") is False  # reserved stays used
    assert s.is_used("10.0.2.0/24")


def test_reserve_outside_is_noop() -> None:
    s = CidrSet("10.0.0.0/22", 24)
    assert s.reserve("192.168.0.0/16") == 0
    assert s.reserve("fd00::/8") == 0
    assert s.free == 4


def test_reserve_larger_than_set_covers_all() -> None:
    s = CidrSet("10.0.0.0/22", 24)
    assert s.reserve("10.0.0.0/8") == 4
    assert s.capacity == 0


def test_overlapping_ranges() -> None:
    s = CidrSet("10.0.0.0/16", 24)
    assert list(s.overlapping("10.0.4.0/23")) == [4, 5]
    assert list(s.overlapping("10.0.4.128/25")) == [4]
    assert list(s.overlapping("10.0.0.0/8")) == list(range(256))
    assert not s.overlapping("10.1.0.0/24")


def test_small_set_padding_bits_are_never_allocated() -> None:
    s = CidrSet("10.0.0.0/30", 31)  # 2 blocks in a 1-byte bitmap
    assert {str(s.allocate()), str(s.allocate())} == {"10.0.0.0/31", "10.0.0.2/31"}
    with pytest.raises(CIDRExhaustedError):
        s.allocate()


def test_full_large_set_is_exhausted_exactly() -> None:
    s = CidrSet("fd00::/48", 64)
    nets = {s.allocate() for _ in range(s.total)}
    assert len(nets) == 65536 and s.free == 0
    with pytest.raises(CIDRExhaustedError):
        s.allocate()


# ------------------------------------------------------------------------------------------ properties
ops = st.lists(st.tuples(st.sampled_from(["alloc", "release", "occupy"]), st.integers(0, 15)), max_size=200)


@settings(max_examples=150, deadline=None)
@given(ops=ops, v6=st.booleans())
def test_property_no_overlap_aligned_and_counts(ops: list[tuple[str, int]], v6: bool) -> None:
    """Model check against a Python set: allocate never returns a block in use, counts always agree."""
    cidr, mask = ("fd00:1::/60", 64) if v6 else ("10.8.0.0/20", 24)  # 16 blocks: many collisions
    s = CidrSet(cidr, mask)
    parent = ipaddress.ip_network(cidr)
    live: set[str] = set()
    for op, i in ops:
        block = str(s.block(i))
        if op == "alloc":
            if len(live) == s.capacity:
                with pytest.raises(CIDRExhaustedError):
                    s.allocate()
                continue
            net = s.allocate()
            assert str(net) not in live, "allocate returned a block in use"
            assert net.subnet_of(parent) and net.prefixlen == mask  # inside and aligned
            live.add(str(net))
        elif op == "release":
            assert s.release(block) is (block in live)
            live.discard(block)
        else:
            assert s.occupy(block) is (block not in live)
            live.add(block)
        assert s.used == len(live) and s.free == s.capacity - len(live)
    assert {str(s.block(i)) for i in range(s.total) if s.is_used_index(i)} == live


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 255), unique=True, max_size=255))
def test_property_release_then_allocate_avoids_live_blocks(held: list[int]) -> None:
    s = CidrSet("10.0.0.0/16", 24)
    for i in held:
        s.occupy(s.block(i))
    if held:
        s.release(s.block(held[-1]))
        held = held[:-1]
    new = s.allocate()
    assert s.index_of(new) not in held


@pytest.mark.parametrize(("cidr", "mask"), [("10.0.0.0/8", 24), ("10.0.0.0/24", 31), ("10.0.0.0/24", 32),
                                            ("fd00::/48", 64), ("fd00::/120", 127), ("fd00::/120", 128)])
def test_handed_out_blocks_are_exactly_what_the_ipaddress_constructor_builds(cidr: str, mask: int) -> None:
    """allocate/block skip ipaddress's re-validation (hot path): the objects must still be identical."""
    s = CidrSet(cidr, mask)
    for _ in range(3):
        got = s.allocate()
        want = ipaddress.ip_network(str(got))
        fields = {k: v for k, v in vars(got).items() if k != "hosts"}  # /31, /127: a bound method
        assert type(got) is type(want) and vars(got).keys() == vars(want).keys(), (got, vars(got))
        assert fields == {k: v for k, v in vars(want).items() if k != "hosts"}
        assert got == want and hash(got) == hash(want) and str(got) == str(want)
        assert got.broadcast_address == want.broadcast_address and got.num_addresses == want.num_addresses
        assert next(iter(got.hosts())) == next(iter(want.hosts())) and got.subnet_of(s.cidr)  # type: ignore[arg-type]
    assert s.block(0) == ipaddress.ip_network(cidr.split("/")[0] + f"/{mask}")


V4_TEXTS = ["10.0.1.0/24", "10.255.255.0/24", "10.0.1.5/24", "11.0.0.0/24", "9.255.255.0/24", "010.0.1.0/24",
            "10.0.1.0/024", " 10.0.1.0/24", "fd00::/24", "10.0.1.0", "10.0.0.0/16"]
V6_TEXTS = ["fd00:0:0:1::/64", "FD00:0:0:1::/64", "fd00:0:0:1::1/64", "fd00:0:1::/64", "10.0.1.0/64",
            "::ffff:10.0.1.0/64"]


@pytest.mark.parametrize(("cidr", "mask", "text"), [("10.0.0.0/8", 24, t) for t in V4_TEXTS]
                         + [("fd00::/48", 64, t) for t in V6_TEXTS])
def test_fast_index_of_agrees_with_the_general_parser(cidr: str, mask: int, text: str) -> None:
    """The text fast path of index_of (occupy's hot path) returns what parsing the network would, and
    anything it does not take goes to the general path for the precise error."""
    s = CidrSet(cidr, mask)
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        net = None
    if net is not None and net.version == s.cidr.version and net.prefixlen == mask and net.subnet_of(s.cidr):
        offset = int(net.network_address) - int(s.cidr.network_address)
        assert s.index_of(text) == offset >> (s.cidr.max_prefixlen - mask)
    else:
        with pytest.raises(InvalidCIDRError):
            s.index_of(text)
