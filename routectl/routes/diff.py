"""Pure desired-vs-actual route diff: which routes to create, replace, delete or keep.

Safety rule: an action is only ever emitted for a route that is `owned` (the driver decides ownership
with provider-specific evidence), and deletions are confined to the cluster CIDRs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from routectl.routes.model import CloudRoute, RouteAction, canonical_cidr, cidr_order, inside_any, parse_pools

Key = tuple[str, str]  # (table, canonical destination)


def route_key(route: CloudRoute) -> Key:
    """(table, canonical destination) of a listed route."""
    return (route.table, canonical_cidr(route.destination))


def diff_routes(
    desired: Mapping[Key, tuple[str, str]],
    actual: Iterable[CloudRoute],
    cluster_cidrs: Sequence[str],
) -> list[RouteAction]:
    """Compare desired {(table, destination): (node, target)} with the listed routes.

    - owned route with the desired target and active state -> keep (one per key; extra owned copies
      with the same destination are deleted, as ECMP to a dead next hop would blackhole traffic);
    - owned route with another target, or a blackhole -> replace;
    - no owned route for a desired key -> create;
    - owned route (any state) inside the cluster CIDRs that no node wants -> delete.
    Routes not owned are ignored entirely. Deletes come first in the result, then replaces, then creates.
    """
    pools = parse_pools(list(cluster_cidrs))
    want = {(t, canonical_cidr(d)): v for (t, d), v in desired.items()}
    by_key: dict[Key, list[CloudRoute]] = defaultdict(list)
    for r in actual:
        if r.owned:
            by_key[route_key(r)].append(r)

    deletes: list[RouteAction] = []
    replaces: list[RouteAction] = []
    creates: list[RouteAction] = []
    keeps: list[RouteAction] = []
    for key, routes in by_key.items():
        table, dest = key
        if key not in want:
            if inside_any(dest, pools):
                deletes += [RouteAction("delete", table, dest, r.target, r.node, r) for r in routes]
            continue
        node, target = want[key]
        good = [r for r in routes if r.target == target and r.state == "active"]
        if good:
            keeps.append(RouteAction("keep", table, dest, target, node, good[0]))
            rest = [r for r in routes if r is not good[0]]
            deletes += [RouteAction("delete", table, dest, r.target, r.node, r) for r in rest]
        else:
            replaces.append(RouteAction("replace", table, dest, target, node, routes[0]))
            deletes += [RouteAction("delete", table, dest, r.target, r.node, r) for r in routes[1:]]
    for key, (node, target) in want.items():
        if key not in by_key:
            creates.append(RouteAction("create", key[0], key[1], target, node, None))
    # deterministic, address-ordered output: the same nodes get refused first when a table is full
    return sorted(deletes, key=_order) + sorted(replaces, key=_order) + sorted(creates, key=_order) \
        + sorted(keeps, key=_order)


def _order(a: RouteAction) -> tuple[str, tuple[int, int, int]]:
    return (a.table, cidr_order(a.destination))
