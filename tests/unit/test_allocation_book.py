"""The controller's allocation rule (routectl.controller.allocation), on plain values: no I/O."""

from __future__ import annotations

from routectl.controller.allocation import AllocationBook
from routectl.ipam.model import PoolSpec


def _book(cidr: str = "10.0.0.0/22") -> AllocationBook:
    book = AllocationBook()
    book.allocator.set_pools([PoolSpec(name="p", cidrs=(cidr,), node_selector={}, ipv4_mask=24)])
    return book


def test_an_empty_or_older_view_changes_nothing_we_wrote() -> None:
    book = _book()
    a = book.allocate("n1", {})
    book.wrote("n1", a.cidrs, "10", "uid-1")
    assert book.observe("n1", (), "9") is None  # the watch has not brought our write yet
    assert book.observe("n1", ("10.0.3.0/24",), "9") is None  # older than our write: not the truth
    assert book.allocation_of("n1") == a
    assert book.cidrs_of("n1", (), "uid-1") == a.cidrs
    assert book.cidrs_of("n1", (), "uid-2") == ()  # a re-created Node does not carry the old write


def test_a_block_written_to_another_node_is_a_claim_conflict_never_a_write() -> None:
    book = _book("10.0.0.0/24")  # one block
    a = book.allocate("n1", {})
    book.wrote("n1", a.cidrs, "10")
    assert book.claim_problem(a) is None
    book.allocator.release("n1")  # a bug frees the block behind the book's back...
    b = book.allocate("n2", {})
    assert b.cidrs == a.cidrs
    problem = book.claim_problem(b)  # ...the written memory still refuses to hand it out twice
    assert problem is not None and "n1" in problem
    book.release("n1")
    assert book.claim_problem(b) is None
