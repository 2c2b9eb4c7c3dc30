"""Allocator rules whose breakage would hand one block to two nodes (issue 9's mutants b and c)."""

from __future__ import annotations

import pytest

from routectl.ipam.allocator import Allocator, NodeCIDRs
from routectl.ipam.errors import CIDRExhaustedError
from routectl.ipam.model import PoolSpec


def pool(name: str, *cidrs: str, sel: dict[str, str] | None = None) -> PoolSpec:
    return PoolSpec(name=name, cidrs=tuple(cidrs), node_selector=sel or {}, ipv4_mask=24)


def test_a_cidr_marked_invalid_for_overlapping_another_pool_serves_nothing() -> None:
    a = Allocator()
    assert a.set_pools([pool("a", "10.0.0.0/23", sel={"p": "a"})]) == {"a": []}
    first = a.allocate("a1", {"p": "a"})
    assert first.cidrs == ("10.0.0.0/24",)
    # pool b is created later with a CIDR inside a's: b's CIDR is the newer one, so it is Invalid
    problems = a.set_pools([pool("a", "10.0.0.0/23", sel={"p": "a"}), pool("b", "10.0.0.0/24", "10.0.1.0/24",
                                                                             sel={"p": "b"})])
    assert problems["b"] and not problems["a"]
    with pytest.raises(CIDRExhaustedError):
        a.allocate("b1", {"p": "b"})  # nothing from an Invalid CIDR, even where a block looks free
    assert a.allocation_of("b1") is None
    assert a.allocate("a2", {"p": "a"}).cidrs == ("10.0.1.0/24",)


def test_a_block_held_through_another_pools_set_is_never_handed_out() -> None:
    a = Allocator()
    a.set_pools([pool("a", "10.0.0.0/24", sel={"p": "a"}), pool("b", "10.0.4.0/23", sel={"p": "b"})])
    assert a.allocate("a1", {"p": "a"}).cidrs == ("10.0.0.0/24",)
    # the operator drops pool a and widens b over a's range: a1's block is now inside b's CIDR
    a.set_pools([pool("b", "10.0.4.0/23", "10.0.0.0/23", sel={"p": "b"})])
    got = {a.allocate(f"b{i}", {"p": "b"}).cidrs[0] for i in range(3)}
    assert "10.0.0.0/24" not in got
    assert got == {"10.0.4.0/24", "10.0.5.0/24", "10.0.1.0/24"}


def test_a_rebuilt_holding_occupies_the_block_in_every_set_that_covers_it() -> None:
    a = Allocator()
    a.set_pools([pool("wide", "10.0.0.0/22", sel={"p": "w"}), pool("narrow", "10.0.0.0/23", sel={"p": "n"})])
    a.rebuild([NodeCIDRs("old", ("10.0.0.0/24",), {})])
    assert "old" in a.claims(["10.0.0.0/24"])
    for labels in ({"p": "w"}, {"p": "n"}):
        try:
            got = a.allocate(f"new-{labels['p']}", labels).cidrs
        except CIDRExhaustedError:
            continue
        assert got != ("10.0.0.0/24",)


def test_a_holding_is_seen_by_a_serving_set_even_when_a_blamed_set_covers_it_too() -> None:
    a = Allocator()
    a.set_pools([pool("a", "10.9.0.0/24", sel={"p": "a"}),
                 pool("b", "10.0.0.0/24", "10.0.1.0/24", sel={"p": "b"})])
    # an operator appends an overlapping CIDR to pool a: the newer CIDR is blamed (Invalid), b keeps serving
    problems = a.set_pools([pool("a", "10.9.0.0/24", "10.0.0.0/23", sel={"p": "a"}),
                            pool("b", "10.0.0.0/24", "10.0.1.0/24", sel={"p": "b"})])
    assert problems["a"] and not problems["b"]
    a.rebuild([NodeCIDRs("old", ("10.0.0.0/24",), {"p": "b"})])
    assert a.allocate("new", {"p": "b"}).cidrs == ("10.0.1.0/24",)
    with pytest.raises(CIDRExhaustedError):
        a.allocate("newer", {"p": "b"})


def test_seeing_no_podcidr_never_releases_a_holding() -> None:
    a = Allocator()
    a.set_pools([pool("p", "10.0.0.0/23")])
    assert a.allocate("n1", {}).cidrs == ("10.0.0.0/24",)
    assert a.occupy("n1", []) == []  # a stale view (before our write landed) shows no podCIDR
    assert a.allocation_of("n1") is not None and "n1" in a.claims(["10.0.0.0/24"])
    assert a.allocate("n2", {}).cidrs == ("10.0.1.0/24",)
