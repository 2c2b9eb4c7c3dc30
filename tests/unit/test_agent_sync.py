"""Unit tests of the agent's desired-state computation from a Node and PodCIDRPools (pure)."""

from __future__ import annotations

import ipaddress

from routectl.agent.sync import compute_desired, node_pod_cidrs

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


def test_zero_prefix_is_refused_as_open_rules():
    d = compute_desired(node("10.244.1.0/24"), [pool("a", ["10.244.0.0/16"], ["0.0.0.0/0"])])
    assert d.errors and "disable masquerading" in d.errors[-1]
    assert 4 not in d.specs


def test_invalid_node_pod_cidr():
    cidrs, errors = node_pod_cidrs(node("10.244.1.5/24"))
    assert cidrs == () and "invalid podCIDR" in errors[0]
    cidrs, errors = node_pod_cidrs({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24"}})
    assert cidrs == (N("10.244.1.0/24"),) and errors == []
