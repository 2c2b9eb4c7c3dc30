"""GCE-only behaviour on the fake Compute server: names, markers, pagination, operation-level quota errors."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from routectl.cloud.gce import ROUTE_LIST_FIELDS
from routectl.constants import ROUTE_DESCRIPTION_MARKER
from routectl.routes.model import NodeRoutes
from routectl.sim.fake_gce import FakeGCE
from tests.cloud.harness import GCEHarness


@contextlib.contextmanager
def _denied(gce: GCEHarness, permission: str, resource: str | None = None) -> Iterator[None]:
    """The fake GCE answers 403 to every call needing `permission` (on `resource` only, when given)."""
    orig = gce.fake._permission

    def deny(method: str, rest: list[str]) -> tuple[str, bool]:
        perm, mutating = orig(method, rest)
        if perm == permission and (resource is None or rest[-1] == resource):
            from routectl.sim.fake_gce import _HTTPError

            raise _HTTPError(403, "forbidden", f"Required '{permission}' permission")
        return perm, mutating

    gce.fake._permission = deny  # type: ignore[method-assign]
    try:
        yield
    finally:
        gce.fake._permission = orig  # type: ignore[method-assign]


def test_route_fields_names_and_marker(gce: GCEHarness) -> None:
    node = gce.add_node("node-1", ("10.244.1.0/24", "fd00:10:244:1::/64"))
    gce.reconciler(priority=900, tags=["k8s-node"]).sync([node])
    routes = gce.all_routes()
    assert len(routes) == 2
    for name, r in routes.items():
        assert len(name) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
        assert name.startswith("rc-c1-" + node.uid)
        assert r["description"] == f"{ROUTE_DESCRIPTION_MARKER} cluster=c1"
        assert r["priority"] == 900 and r["tags"] == ["k8s-node"]
        assert r["network"].endswith("/projects/sim-project/global/networks/default")
        assert r["nextHopInstance"].endswith("/projects/sim-project/zones/us-central1-a/instances/node-1")
    assert sorted(n.endswith("-v6") for n in routes) == [False, True]


def test_pagination_and_steady_state_list_is_pages_only(gce: GCEHarness) -> None:
    nodes = [NodeRoutes(f"n{i}", f"uid-{i}", gce.fake.add_instance(gce.zone, f"n{i}"),
                        (f"10.244.{i // 256}.{i % 256}/32",)) for i in range(520)]
    gce.set_limit(1000)
    rec = gce.reconciler()
    res = rec.sync(nodes)
    assert res.routes_programmed == 520 and res.failed == []
    gce.reset_log()
    res = rec.sync(nodes)
    assert gce.mutating_calls() == 0
    assert gce.list_calls() == 2  # 520 routes, 500 per page
    assert gce.fake.calls("compute.instances.get") == 0  # next hops cached
    assert res.routes_programmed == 520


def _get_routes(fake: FakeGCE, query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    url = f"{fake.endpoint}/compute/v1/projects/sim-project/global/routes{query}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
        return dict(json.load(r))


def test_route_lists_ask_for_the_fields_the_driver_reads_and_the_fake_sends_only_those(
        gce: GCEHarness) -> None:
    node = gce.add_node("node-1", ("10.244.1.0/24",))
    foreign = gce.add_foreign_routes()
    rec = gce.reconciler()
    rec.sync([node])
    gce.reset_log()
    listed = gce.driver().list_routes()
    assert gce.fake.field_masks == [("/compute/v1/projects/sim-project/global/routes", ROUTE_LIST_FIELDS)]
    # what the driver made of the partial answer: ours is owned with its next hop, the others are not ours
    ours = [r for r in listed if r.owned]
    assert [(r.destination, r.target) for r in ours] == [("10.244.1.0/24", gce.target_of(node))]
    others = {r.name: r.target for r in listed if not r.owned}
    assert set(others) == foreign - {"rc-c1-99999999-2222-3333-4444-555555555555"}  # (another network)
    assert others["default-internet"] == "global/gateways/default"
    assert others["vpn-10-244-200"] == "projects/sim-project/zones/us-central1-a/instances/vpn-box"
    # the fake trims its answer as GCE does, for the header and for the `fields` query parameter
    full = _get_routes(gce.fake)["items"]
    assert {"selfLink", "priority", "kind", "id"} <= set(full[0])
    for answer in (_get_routes(gce.fake, headers={"X-Goog-FieldMask": ROUTE_LIST_FIELDS}),
                   _get_routes(gce.fake, "?fields=" + urllib.request.quote(ROUTE_LIST_FIELDS))):
        assert set(answer) == {"items"}  # one page: no nextPageToken to send
        assert [set(i) for i in answer["items"]] == [
            set(i) & {"name", "description", "network", "destRange", "nextHopInstance", "nextHopGateway",
                      "nextHopIp", "nextHopIlb"} for i in full]
    with pytest.raises(urllib.error.HTTPError) as bad:
        _get_routes(gce.fake, headers={"X-Goog-FieldMask": "items(name"})
    assert bad.value.code == 400


def test_a_route_list_that_fails_is_retried_or_named_with_its_cause(gce: GCEHarness) -> None:
    """The list is read past the client's protobuf parse: its errors must still be the client's own."""
    from routectl.cloud.base import CloudError
    from routectl.sim.fake_gce import _HTTPError

    nodes = [gce.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(3)]
    gce.reconciler().sync(nodes)
    orig, answers = gce.fake._list, iter(["busy"])

    def flaky(query: dict[str, list[str]]) -> dict[str, Any]:
        if next(answers, None):
            raise _HTTPError(503, "backendError", "try again")
        return orig(query)

    gce.fake._list = flaky  # type: ignore[method-assign]
    gce.reset_log()
    assert sorted(r.destination for r in gce.driver().list_routes() if r.owned) == [
        "10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert gce.list_calls() == 2  # the 503, then the answer
    with _denied(gce, "compute.routes.list"), pytest.raises(CloudError) as err:
        gce.driver().list_routes()
    assert "listing routes of projects/sim-project/global/networks/default" in str(err.value)
    assert "Required 'compute.routes.list' permission" in str(err.value)


def test_quota_error_in_operation_is_route_limit() -> None:
    with FakeGCE(routes_quota=1, op_delay=0.0, quota_error_in_operation=True) as fake:
        h = GCEHarness.__new__(GCEHarness)
        h.fake = fake
        import itertools

        h._uids = itertools.count(1)
        a, b = h.add_node("a", ("10.244.1.0/24",)), h.add_node("b", ("10.244.2.0/24",))
        drv = h.driver()
        from routectl.cloud.base import RouteLimitError

        drv.create("default", "10.244.1.0/24", drv.resolve(a), a)
        with pytest.raises(RouteLimitError, match="QUOTA_EXCEEDED"):
            drv.create("default", "10.244.2.0/24", drv.resolve(b), b)


def test_iam_permissions_recorded(gce: GCEHarness) -> None:
    node = gce.add_node("node-1", ("10.244.1.0/24",))
    rec = gce.reconciler()
    rec.sync([node])
    rec.sync([])
    assert gce.fake.required_permissions() == {
        "compute.routes.list", "compute.projects.get", "compute.instances.get", "compute.routes.insert",
        "compute.networks.updatePolicy", "compute.instances.use", "compute.globalOperations.get",
        "compute.routes.delete", "cloudquotas.quotas.get", "compute.networks.get"}


def test_fake_rejects_bad_names_and_duplicates(gce: GCEHarness) -> None:
    import json
    import urllib.error
    import urllib.request

    def post(body: dict) -> int:
        req = urllib.request.Request(f"{gce.fake.endpoint}/compute/v1/projects/sim-project/global/routes",
                                     data=json.dumps(body).encode(), method="POST")
        try:
            return urllib.request.urlopen(req).status
        except urllib.error.HTTPError as e:
            assert "error" in json.loads(e.read())
            return e.code

    base = {"network": "global/networks/default", "destRange": "10.9.0.0/24", "nextHopGateway": "x"}
    assert post(dict(base, name="Bad_Name")) == 400
    assert post(dict(base, name="ok-name")) == 200
    assert post(dict(base, name="ok-name")) == 409
    assert post(dict(base, name="x", destRange="nope")) == 400


def test_many_nodes_in_a_zone_resolve_with_instance_lists(gce: GCEHarness) -> None:
    nodes = [gce.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(60)]
    nodes.append(gce.add_node("noforward", ("10.244.100.0/24",), prereq_ok=False))
    nodes.append(NodeRoutes("ghost", "u-ghost", f"gce://sim-project/{gce.zone}/ghost", ("10.244.101.0/24",)))
    gce.reset_log()
    res = gce.reconciler().sync(nodes)
    assert gce.fake.calls("compute.instances.get") == 0
    assert gce.fake.calls("compute.instances.list") == 1
    assert sum(s.ok for s in res.nodes.values()) == 60
    assert res.nodes["noforward"].reason == "PrerequisiteFailed"
    assert res.nodes["ghost"].reason == "InstanceNotFound"


def test_instance_list_denied_falls_back_to_gets(gce: GCEHarness) -> None:
    nodes = [gce.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(5)]
    drv = gce.driver(instance_list_threshold=2)
    with _denied(gce, "compute.instances.list"):
        got = drv.resolve_many(nodes)
    assert got == {n.name: gce.target_of(n) for n in nodes}


def test_set_cluster_cidrs_adopts_new_pool(gce: GCEHarness) -> None:
    node = gce.add_node("n1", ("10.250.1.0/24",))
    rec = gce.reconciler()
    assert rec.sync([node]).nodes["n1"].reason == "CIDROutsideClusterCIDRs"
    rec.set_cluster_cidrs(["10.244.0.0/16", "10.250.0.0/16"])
    assert rec.sync([node]).nodes["n1"].ok


def test_static_routes_per_network_binds_before_the_project_quota(gce: GCEHarness) -> None:
    """STATIC_ROUTES_PER_NETWORK (20, read through the Cloud Quotas API) binds before the project's ROUTES
    (250); it counts every static route of the network, not only ours; the advice names it and how to
    raise it, and nothing is attempted past it."""
    gce.fake.static_routes_quota = 20
    gce.fill(15)  # somebody else's static routes in the same network
    nodes = [gce.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(8)]
    gce.reset_log()
    res = gce.reconciler().sync(nodes)
    assert gce.create_attempts() == 5
    assert sum(s.ok for s in res.nodes.values()) == 5
    [cap] = res.tables
    assert (cap.used, cap.limit) == (20, 20) and "STATIC_ROUTES_PER_NETWORK" in cap.quota_name
    [w] = [w for w in res.warnings if w.kind == "reached"]
    assert "STATIC_ROUTES_PER_NETWORK" in w.message and "ROUTES of project" not in w.message
    assert "gcloud beta quotas preferences create" in w.message and "--quota-id=" in w.message
    assert w.refused == 3
    # the project quota binds when it has less room: the advice follows
    gce.fake.static_routes_quota = 1000
    gce.fake.routes_quota = gce.used() + 1
    drv = gce.driver(quota_ttl=0)
    [cap] = drv.capacity(drv.list_routes())
    assert "ROUTES of project" in cap.quota_name and cap.limit == gce.used() + 1


def test_403_rate_limit_exceeded_is_retried_like_throttling() -> None:
    """GCE answers an exhausted per-minute budget with 403 rateLimitExceeded: retried, all converge."""
    with FakeGCE(op_delay=0.0, rate=40.0, burst=2, rate_limit_status=403) as fake:
        h = GCEHarness.__new__(GCEHarness)
        h.fake = fake
        import itertools

        h._uids = itertools.count(1)
        nodes = [h.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(8)]
        res = h.reconciler().sync(nodes)
        assert fake.throttled > 0
        assert all(s.ok for s in res.nodes.values()), res.nodes
        assert res.calls.throttled == fake.throttled and res.failed == []


def test_default_rates_stay_below_the_published_budgets() -> None:
    """GCE: 1,500 global mutations per minute; EC2: mutating bucket 50, refill 5/s: defaults leave room."""
    from routectl.cloud import aws, gce

    assert gce.DEFAULT_RATE * 60 < 1500 and gce.DEFAULT_BURST < 1500
    assert aws.DEFAULT_RATE < 5 and aws.DEFAULT_BURST < 50


def test_a_networks_own_static_routes_quota_wins_over_the_default(gce: GCEHarness) -> None:
    """Quota preferences are per network (dimension network_id = the network's numeric id): our network's
    value applies, not the project default and not another network's."""
    gce.fake.static_routes_quota = 10
    gce.fake.network_quota_overrides = {gce.fake.network_id(): 40, gce.fake.network_id("other-net"): 5}
    drv = gce.driver()
    [cap] = drv.capacity(drv.list_routes())
    assert cap.limit == 40 and "STATIC_ROUTES_PER_NETWORK" in cap.quota_name


def test_proxy_settings_of_the_environment_still_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver reads the environment's proxy settings once per client instead of on every call
    # (requests' trust_env); they must still apply: a proxy is used, NO_PROXY still exempts a host.
    import socket

    import requests

    from routectl.cloud.base import CloudError

    with socket.socket() as s:  # a port nobody listens on: any request sent through the "proxy" fails
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    h = GCEHarness()
    try:
        h.reconciler().sync([h.add_node("node-1", ("10.244.1.0/24",))])  # exempt: served directly
        assert len(h.all_routes()) == 1
        monkeypatch.delenv("NO_PROXY")
        # a new client (a new driver) goes through the dead proxy
        with pytest.raises((CloudError, requests.exceptions.ProxyError)):
            h.reconciler().driver.list_routes()
    finally:
        h.close()


def test_a_burst_of_batches_lists_the_zone_once_and_looks_up_instances_newer_than_the_listing(
        gce: GCEHarness) -> None:
    """Batches of new nodes used to list every instance of the zone each: O(N^2) at 5,000 nodes."""
    drv = gce.driver(instance_list_threshold=10)
    batches = [[gce.add_node(f"b{b}n{i}", (f"10.244.{b * 20 + i}.0/24",)) for i in range(20)]
               for b in range(3)]
    gce.reset_log()
    for batch in batches:
        assert drv.resolve_many(batch) == {n.name: gce.target_of(n) for n in batch}
    assert gce.fake.calls("compute.instances.list") == 1 and gce.fake.calls("compute.instances.get") == 0
    # instances created after that listing: a few are looked up one by one, not reported missing
    newer = [gce.add_node(f"new{i}", (f"10.245.{i}.0/24",)) for i in range(3)]
    assert drv.resolve_many(newer + batches[0]) == {n.name: gce.target_of(n) for n in newer + batches[0]}
    assert gce.fake.calls("compute.instances.list") == 1 and gce.fake.calls("compute.instances.get") == 3


def test_no_second_route_is_added_beside_a_stale_one_that_could_not_be_deleted(gce: GCEHarness) -> None:
    """A block handed out again while its old route is still there (a node deleted while no controller ran,
    the block given out before the first sync) gets no route beside the old one: GCE would split the
    block's traffic between both next hops (ECMP)."""
    block = "10.244.5.0/24"
    old = gce.add_node("old", (block,))
    assert gce.reconciler().sync([old]).nodes["old"].ok
    new = gce.add_node("new", (block,))
    with _denied(gce, "compute.routes.delete"):
        res = gce.reconciler().sync([new])  # a new controller: "old" is gone, its route is stale
    assert not res.nodes["new"].ok  # the stale route's delete failed: the node is not routed
    assert gce.routes_to()[block] == {gce.target_of(old)}, "a second route for the block was added"
    res = gce.reconciler().sync([new])  # the delete works again: the stale route goes, then ours comes
    assert res.nodes["new"].ok and gce.routes_to()[block] == {gce.target_of(new)}


def test_a_replace_waits_while_an_extra_copy_of_the_same_destination_cannot_be_deleted(
        gce: GCEHarness) -> None:
    """Two stale routes of ours for one block (two nodes had it while no controller ran) and the block's new
    node: if the extra copy cannot be deleted, replacing the other would leave it beside the new route."""
    block = "10.244.6.0/24"
    first, second = gce.add_node("first", (block,)), gce.add_node("second", (block,))
    drv = gce.driver()
    drv.create("default", block, gce.target_of(first), first)
    drv.create("default", block, gce.target_of(second), second)
    stuck = drv.route_name(second, block)
    new = gce.add_node("new", (block,))
    with _denied(gce, "compute.routes.delete", stuck):
        res = gce.reconciler().sync([new])
    hops = gce.routes_to()[block]
    assert not res.nodes["new"].ok
    assert gce.target_of(new) not in hops, f"the new route was added beside a stale one: {hops}"
    res = gce.reconciler().sync([new])
    assert res.nodes["new"].ok and gce.routes_to()[block] == {gce.target_of(new)}


def test_slow_operations_are_reported_with_the_concurrency_that_would_keep_up(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each insert holds its slot until its operation is DONE: with few slots, slow operations and not
    the rate bound the routes per second. The driver measures that and says what to set."""
    import logging

    h = GCEHarness(op_delay=0.25)
    try:
        drv = h.driver(concurrency=2, rate=100.0, burst=100)
        drv.op_latency.least = 3
        nodes = [h.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(3)]
        with caplog.at_level(logging.WARNING, logger="routectl.cloud.gce"):
            for node in nodes:
                drv.create("default", node.pod_cidrs[0], drv.resolve(node), node)
        said = [r.getMessage() for r in caplog.records if "raise --concurrency" in r.getMessage()]
        assert len(said) == 1, said
        assert "2 in flight make at most" in said[0]
        assert drv.op_latency.average is not None and drv.op_latency.average >= 0.25
    finally:
        h.close()


def test_waiting_for_the_rate_is_not_counted_as_a_slow_operation(caplog: pytest.LogCaptureFixture) -> None:
    """When the token bucket binds, inserts wait for tokens: that is the rate at work, not slow operations,
    and must not make the driver ask for more concurrency."""
    import logging

    h = GCEHarness(op_delay=0.0)
    try:
        drv = h.driver(concurrency=1, rate=5.0, burst=1)  # one token per 0.2 s, one insert at a time
        drv.op_latency.least, drv.op_latency.weight = 3, 0.5  # the average follows the last inserts
        nodes = [h.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(5)]
        with caplog.at_level(logging.WARNING, logger="routectl.cloud.gce"):
            for node in nodes:
                drv.create("default", node.pod_cidrs[0], drv.resolve(node), node)
        assert not [r for r in caplog.records if "raise --concurrency" in r.getMessage()]
        # the inserts after the first waited ~0.2 s each for a token; the operations took milliseconds
        assert drv.op_latency.average is not None and drv.op_latency.average < 0.1
    finally:
        h.close()
