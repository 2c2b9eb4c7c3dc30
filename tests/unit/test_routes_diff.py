"""Pure tests of the route diff: create/replace/delete/keep, ownership and cluster-CIDR confinement."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routectl.routes.diff import diff_routes
from routectl.routes.model import CloudRoute

CIDRS = ["10.244.0.0/16"]


def _kinds(actions: list) -> list[tuple[str, str]]:
    return [(a.kind, a.destination) for a in actions]


def test_create_keep_replace_delete() -> None:
    desired = {("t", "10.244.1.0/24"): ("n1", "a"), ("t", "10.244.2.0/24"): ("n2", "b"),
               ("t", "10.244.3.0/24"): ("n3", "c")}
    actual = [
        CloudRoute("t", "10.244.1.0/24", "a", owned=True),       # keep
        CloudRoute("t", "10.244.2.0/24", "old", owned=True),     # replace
        CloudRoute("t", "10.244.9.0/24", "x", owned=True),       # stale -> delete
    ]
    acts = diff_routes(desired, actual, CIDRS)
    assert _kinds(acts) == [("delete", "10.244.9.0/24"), ("replace", "10.244.2.0/24"),
                            ("create", "10.244.3.0/24"), ("keep", "10.244.1.0/24")]
    replace = acts[1]
    assert replace.target == "b" and replace.route is actual[1] and replace.node == "n2"


def test_blackhole_desired_is_replaced_and_undesired_deleted() -> None:
    desired = {("t", "10.244.1.0/24"): ("n1", "a")}
    actual = [CloudRoute("t", "10.244.1.0/24", "a", state="blackhole", owned=True),
              CloudRoute("t", "10.244.2.0/24", "b", state="blackhole", owned=True)]
    assert _kinds(diff_routes(desired, actual, CIDRS)) == [("delete", "10.244.2.0/24"),
                                                          ("replace", "10.244.1.0/24")]


def test_owned_duplicates_for_one_destination_collapse_to_one() -> None:
    desired = {("t", "10.244.1.0/24"): ("n1", "a")}
    actual = [CloudRoute("t", "10.244.1.0/24", "dead", name="old", owned=True),
              CloudRoute("t", "10.244.1.0/24", "a", name="new", owned=True)]
    acts = diff_routes(desired, actual, CIDRS)
    assert [(a.kind, a.route.name) for a in acts] == [("delete", "old"), ("keep", "new")]


def test_owned_route_outside_cluster_cidrs_is_left_alone() -> None:
    assert diff_routes({}, [CloudRoute("t", "192.168.0.0/24", "a", owned=True)], CIDRS) == []


def test_destinations_are_canonicalised() -> None:
    desired = {("t", "fd00:10:244:0001::/64"): ("n1", "a")}
    actual = [CloudRoute("t", "fd00:10:244:1::/64", "a", owned=True)]
    assert _kinds(diff_routes(desired, actual, ["fd00:10:244::/56"])) == [("keep", "fd00:10:244:1::/64")]


def test_creates_are_address_ordered() -> None:
    desired = {("t", f"10.244.{i}.0/24"): (f"n{i}", "a") for i in (10, 2, 7)}
    assert [a.destination for a in diff_routes(desired, [], CIDRS)] == [
        "10.244.2.0/24", "10.244.7.0/24", "10.244.10.0/24"]


routes = st.builds(
    CloudRoute,
    table=st.sampled_from(["t1", "t2"]),
    destination=st.integers(0, 20).map(lambda i: f"10.244.{i}.0/24"),
    target=st.sampled_from(["a", "b", None]),
    state=st.sampled_from(["active", "blackhole"]),
    owned=st.booleans(),
)


keys = st.tuples(st.sampled_from(["t1", "t2"]), st.integers(0, 20).map(lambda i: f"10.244.{i}.0/24"))


@given(st.lists(routes, max_size=30),
       st.dictionaries(keys, st.tuples(st.just("n"), st.sampled_from(["a", "b"])), max_size=20))
def test_never_acts_on_routes_not_owned(actual: list[CloudRoute], desired: dict) -> None:
    acts = diff_routes(desired, actual, CIDRS)
    for a in acts:
        if a.route is not None:
            assert a.route.owned
    # every desired key gets exactly one create/replace/keep
    covered = [(a.table, a.destination) for a in acts if a.kind != "delete"]
    assert sorted(covered) == sorted(desired)
    # nothing owned survives unless desired: delete covers all owned routes not kept
    kept = {id(a.route) for a in acts if a.kind in ("keep", "replace")}
    deleted = {id(a.route) for a in acts if a.kind == "delete"}
    assert {id(r) for r in actual if r.owned} == kept | deleted
