"""Unit tests of the agent's desired-state computation from a Node and PodCIDRPools (pure)."""

from __future__ import annotations

import ipaddress

from routectl.agent.sync import compute_desired, node_pod_cidrs
from routectl.ipam.model import PoolSpec
from routectl.ipam.validate import validate_pool

N = ipaddress.ip_network


def node(*cidrs: str, name: str = "node-a") -> dict:
    spec = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)} if cidrs else {}
    return {"metadata": {"name": name, "uid": "u1"}, "spec": spec}


def pool(name: str, cidrs: list[str], non_masq: list[str] | None = None,
         link_local: bool | None = None) -> dict:
    masq: dict = {}
    if non_masq is not None:
        masq["nonMasqueradeCIDRs"] = non_masq
    if link_local is not None:
        masq["masqLinkLocal"] = link_local
    return {"apiVersion": "routectl.io/v1alpha1", "kind": "PodCIDRPool", "metadata": {"name": name},
            "spec": {"cidrs": cidrs, "masquerade": masq}}


def returns(desired, family=4):
    return [str(e.cidr) for e in desired.specs[family].non_masquerade]


def test_every_pool_cidr_plus_own_pool_extras_plus_link_local():
    d = compute_desired(node("10.244.1.0/24"), [
        pool("a", ["10.244.0.0/16"], ["10.0.0.0/24"]),
        pool("b", ["10.250.0.0/16"], ["192.168.0.0/16"]),
    ])
    assert d.errors == ()
    assert returns(d) == ["10.0.0.0/24", "10.244.0.0/16", "10.250.0.0/16", "169.254.0.0/16"]
    assert d.specs[4].pod_cidrs == (N("10.244.1.0/24"),)
    assert d.specs[4].random_fully


def test_masq_link_local_of_the_nodes_pool():
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["10.244.0.0/16"], link_local=True),
                                                pool("b", ["10.250.0.0/16"], link_local=False)])
    assert returns(d) == ["10.244.0.0/16", "10.250.0.0/16"]


def test_node_outside_every_pool_uses_all_extras_and_keeps_link_local():
    d = compute_desired(node("172.30.0.0/24"), [
        pool("a", ["10.244.0.0/16"], ["10.0.0.0/24"], link_local=True),
        pool("b", ["10.250.0.0/16"], ["10.1.0.0/24"]),
    ])
    assert returns(d) == ["10.0.0.0/24", "10.1.0.0/24", "10.244.0.0/16", "10.250.0.0/16", "169.254.0.0/16"]


def test_dual_stack_gives_one_spec_per_family():
    d = compute_desired(node("10.244.1.0/24", "fd00:10:244:1::/64"),
                        [pool("a", ["10.244.0.0/16", "fd00:10:244::/56"])], random_fully=False)
    assert sorted(d.specs) == [4, 6]
    assert returns(d, 6) == ["fd00:10:244::/56", "fe80::/10"]
    assert not d.specs[6].random_fully


def test_no_pod_cidr_means_nothing_to_install():
    d = compute_desired(node(), [pool("a", ["10.244.0.0/16"])])
    assert d.specs == {} and d.errors == () and d.pod_cidrs == ()


def test_invalid_non_masquerade_cidr_is_an_error_naming_the_field():
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["10.244.0.0/16"], ["10.0.0.0/33"])])
    assert len(d.errors) == 1
    assert "PodCIDRPool a: spec.masquerade.nonMasqueradeCIDRs[0]" in d.errors[0]
    # the partial spec masquerades more, never less
    assert returns(d) == ["10.244.0.0/16", "169.254.0.0/16"]


def test_invalid_cidr_in_an_unrelated_pool_is_still_reported():
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["10.244.0.0/16"]),
                                                pool("b", ["10.250.0.0/16"], ["not-a-cidr"])])
    assert any("PodCIDRPool b" in e for e in d.errors)


def test_host_bits_and_wrong_shape_are_errors():
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["10.244.0.0/16"], ["10.0.0.1/8"]),
                                                {"kind": "PodCIDRPool", "metadata": {"name": "c"},
                                                 "spec": {"cidrs": "10.0.0.0/8"}}])
    assert any("host bits" in e for e in d.errors)
    assert any("PodCIDRPool c" in e and "spec.cidrs" in e for e in d.errors)


def masquerades(desired, family=4):
    return [str(p) for p in desired.specs[family].pod_cidrs]


def test_zero_prefix_entry_is_dropped_alone_and_reported():
    """A /0 costs only itself: the family still gets a chain with the other entries and MASQUERADE."""
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["10.244.0.0/16"], ["10.0.0.0/16", "0.0.0.0/0"])])
    assert len(d.errors) == 1
    assert "PodCIDRPool a: spec.masquerade.nonMasqueradeCIDRs[1] 0.0.0.0/0 is too wide" in d.errors[0]
    assert returns(d) == ["10.0.0.0/16", "10.244.0.0/16", "169.254.0.0/16"]
    assert masquerades(d) == ["10.244.1.0/24"]


def test_zero_prefix_ipv6_entry_leaves_ipv4_alone():
    d = compute_desired(node("10.244.1.0/24", "fd00:10:244:1::/64"),
                        [pool("a", ["10.244.0.0/16", "fd00:10:244::/56"], ["10.0.0.0/16", "::/0"])])
    assert len(d.errors) == 1 and "nonMasqueradeCIDRs[1] ::/0 is too wide" in d.errors[0]
    assert returns(d, 6) == ["fd00:10:244::/56", "fe80::/10"]
    assert returns(d) == ["10.0.0.0/16", "10.244.0.0/16", "169.254.0.0/16"]


def test_halves_covering_the_family_are_dropped_like_zero():
    d = compute_desired(node("10.244.1.0/24"),
                        [pool("a", ["10.244.0.0/16"], ["0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/16"])])
    assert len(d.errors) == 2 and all("is too wide" in e for e in d.errors)
    assert returns(d) == ["10.0.0.0/16", "10.244.0.0/16", "169.254.0.0/16"]
    assert masquerades(d) == ["10.244.1.0/24"]


def test_agent_and_validator_apply_the_same_width_rule():
    """Every entry the agent drops, validate_pool refuses, and the other way round (one shared function)."""
    widths = ["0.0.0.0/0", "0.0.0.0/1", "8.0.0.0/7", "10.0.0.0/8", "172.16.0.0/12",
              "::/0", "fc00::/7", "fd00::/8"]
    for cidr in widths:
        obj = pool("a", ["10.244.0.0/16", "fd00:10:244::/56"], [cidr])
        agent_drops = bool(compute_desired(node("10.244.1.0/24", "fd00:10:244:1::/64"), [obj]).errors)
        validator_refuses = bool(validate_pool(PoolSpec.from_resource(obj)))
        assert agent_drops == validator_refuses == (N(cidr).prefixlen < 8), cidr


def test_too_wide_pool_cidr_is_not_a_return_rule_but_still_owns_its_nodes():
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["0.0.0.0/4", "10.244.0.0/16"], link_local=True)])
    assert any("spec.cidrs[0] 0.0.0.0/4 is too wide" in e for e in d.errors)
    assert returns(d) == ["10.244.0.0/16"]  # masqLinkLocal of the owning pool still honoured


def test_many_entries_covering_the_family_fall_back_to_pool_cidrs_not_to_no_rules():
    """256 /8 entries spread over pools (each one valid) would cover IPv4: extras are dropped instead."""
    eights = [f"{i}.0.0.0/8" for i in range(256)]
    pools = [pool(f"p{k}", [f"10.{250 + k}.0.0/16"], eights[k * 64:(k + 1) * 64]) for k in range(4)]
    d = compute_desired(node("172.30.0.0/24"), pools)  # outside every pool: all extras count
    assert any("together would disable masquerading" in e for e in d.errors)
    assert any("ignored every nonMasqueradeCIDR" in e for e in d.errors)
    assert returns(d) == [f"10.{250 + k}.0.0/16" for k in range(4)] + ["169.254.0.0/16"]
    assert masquerades(d) == ["172.30.0.0/24"]


def test_invalid_node_pod_cidr():
    cidrs, errors = node_pod_cidrs(node("10.244.1.5/24"))
    assert cidrs == () and "invalid podCIDR" in errors[0]
    cidrs, errors = node_pod_cidrs({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24"}})
    assert cidrs == (N("10.244.1.0/24"),) and errors == []
