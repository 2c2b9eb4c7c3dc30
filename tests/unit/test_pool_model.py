"""PoolSpec.from_resource and validate_pool / validate_pools: table tests of shapes and messages."""

from __future__ import annotations

from typing import Any

import pytest

from routectl.constants import API_VERSION, POOL_KIND
from routectl.ipam.errors import InvalidCIDRError, PoolSpecError
from routectl.ipam.model import MasqueradeSpec, PoolSpec
from routectl.ipam.validate import validate_pool, validate_pools


def obj(spec: dict[str, Any], name: str = "p", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": POOL_KIND, "metadata": {"name": name, **meta}, "spec": spec}


def test_from_resource_full() -> None:
    spec = PoolSpec.from_resource(
        obj(
            {
                "cidrs": ["10.244.0.0/16", "fd00:10:244::/56"],
                "nodeMaskSizeIPv4": 25,
                "nodeMaskSizeIPv6": 80,
                "nodeSelector": {"zone": "a"},
                "reservedCIDRs": ["10.244.255.0/24"],
                "masquerade": {"nonMasqueradeCIDRs": ["10.0.0.0/8"], "masqLinkLocal": True},
                "routeLimitWarningPercent": 90,
            },
            creationTimestamp="2026-01-01T00:00:00Z",
        )
    )
    assert spec == PoolSpec(
        name="p",
        cidrs=("10.244.0.0/16", "fd00:10:244::/56"),
        ipv4_mask=25,
        ipv6_mask=80,
        node_selector={"zone": "a"},
        reserved=("10.244.255.0/24",),
        masquerade=MasqueradeSpec(("10.0.0.0/8",), True),
        route_limit_warning_percent=90,
        creation_timestamp="2026-01-01T00:00:00Z",
    )
    assert spec.families == (4, 6)
    assert [str(n) for n in spec.networks] == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert spec.mask_for(4) == 25 and spec.mask_for(6) == 80
    assert PoolSpec.from_resource(spec.to_resource()) == spec  # round trip


def test_from_resource_defaults() -> None:
    spec = PoolSpec.from_resource(obj({"cidrs": ["fd00::/56"]}))
    assert (spec.ipv4_mask, spec.ipv6_mask, spec.route_limit_warning_percent) == (24, 64, 80)
    assert spec.node_selector == {} and spec.reserved == () and spec.masquerade == MasqueradeSpec((), False)
    assert spec.families == (6,)
    assert spec.matches({"anything": "x"}) and spec.matches({})


@pytest.mark.parametrize(
    ("o", "fragment"),
    [
        ({"kind": POOL_KIND, "metadata": {}, "spec": {"cidrs": []}}, "metadata.name"),
        ({"kind": "Node", "metadata": {"name": "x"}}, "kind must be PodCIDRPool"),
        (obj(None), "PodCIDRPool p: spec is missing"),  # type: ignore[arg-type]
        (obj({}), "spec.cidrs is required"),
        (obj({"cidrs": "10.0.0.0/8"}), "spec.cidrs must be a list"),
        (obj({"cidrs": [1]}), "spec.cidrs must be a list"),
        (
            obj({"cidrs": ["10.0.0.0/8"], "nodeMaskSizeIPv4": "24"}),
            "spec.nodeMaskSizeIPv4 must be an integer",
        ),
        (
            obj({"cidrs": ["10.0.0.0/8"], "nodeMaskSizeIPv6": True}),
            "spec.nodeMaskSizeIPv6 must be an integer",
        ),
        (obj({"cidrs": ["10.0.0.0/8"], "nodeSelector": ["a"]}), "spec.nodeSelector must map"),
        (obj({"cidrs": ["10.0.0.0/8"], "nodeSelector": {"a": 1}}), "spec.nodeSelector must map"),
        (obj({"cidrs": ["10.0.0.0/8"], "reservedCIDRs": "x"}), "spec.reservedCIDRs must be a list"),
        (obj({"cidrs": ["10.0.0.0/8"], "masquerade": []}), "spec.masquerade must be a mapping"),
        (obj({"cidrs": ["10.0.0.0/8"], "masquerade": {"masqLinkLocal": "no"}}), "masqLinkLocal must be true"),
        (
            obj({"cidrs": ["10.0.0.0/8"], "masquerade": {"nonMasqueradeCIDRs": [None]}}),
            "spec.masquerade.nonMasqueradeCIDRs must be a list",
        ),
        (obj({"cidrs": ["10.0.0.0/8"], "routeLimitWarningPercent": 8.5}), "routeLimitWarningPercent must be"),
        ("not a mapping", "must be a mapping"),
    ],
)
def test_from_resource_errors_name_the_field(o: Any, fragment: str) -> None:
    with pytest.raises(PoolSpecError) as exc:
        PoolSpec.from_resource(o)
    assert fragment in str(exc.value)


def test_networks_raise_on_bad_cidr() -> None:
    with pytest.raises(InvalidCIDRError, match=r"spec.cidrs\[1\]"):
        _ = PoolSpec("p", ("10.0.0.0/8", "10.0.0.1/8")).networks


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (PoolSpec("p", ()), "spec.cidrs is empty"),
        (PoolSpec("p", ("10.0.0.0/33",)), "spec.cidrs[0] '10.0.0.0/33' is not a valid CIDR"),
        (PoolSpec("p", ("x",)), "spec.cidrs[0] 'x' is not a CIDR"),
        (
            PoolSpec("p", ("10.244.1.0/16",)),
            "spec.cidrs[0] 10.244.1.0/16 has host bits set; did you mean 10.244.0.0/16",
        ),
        (
            PoolSpec("p", ("10.244.0.0/16",), ipv4_mask=12),
            "node mask /12 is shorter than the CIDR's /16 prefix",
        ),
        (PoolSpec("p", ("10.0.0.0/8",), ipv4_mask=26), "2^18 blocks; at most 2^16"),
        (PoolSpec("p", ("fd00::/32",)), "use a node mask of at most /48"),
        (
            PoolSpec("p", ("10.0.0.0/16", "10.0.128.0/17")),
            "spec.cidrs[1] 10.0.128.0/17 overlaps spec.cidrs[0]",
        ),
        (PoolSpec("p", ("10.0.0.0/16",), ipv4_mask=40), "spec.nodeMaskSizeIPv4 /40 is out of range"),
        (PoolSpec("p", ("fd00::/56",), ipv6_mask=0), "spec.nodeMaskSizeIPv6 /0 is out of range"),
        (PoolSpec("p", ("10.0.0.0/16",), reserved=("10.96.0.0",)), "spec.reservedCIDRs[0]"),
        (
            PoolSpec("p", ("10.0.0.0/16",), masquerade=MasqueradeSpec(("10.0.0.1/8",))),
            "spec.masquerade.nonMasqueradeCIDRs[0] 10.0.0.1/8 has host bits set",
        ),
        (PoolSpec("p", ("10.0.0.0/16",), route_limit_warning_percent=101), "routeLimitWarningPercent 101"),
        (PoolSpec("", ("10.0.0.0/16",)), "metadata.name must not be empty"),
    ],
)
def test_validate_pool_messages(spec: PoolSpec, fragment: str) -> None:
    problems = validate_pool(spec)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    "spec",
    [
        PoolSpec("p", ("10.244.0.0/16",)),
        PoolSpec("p", ("10.244.0.0/16", "fd00:10:244::/56", "10.245.0.0/16")),
        PoolSpec("p", ("10.0.0.0/8",), ipv4_mask=24),  # exactly 2^16 blocks
        PoolSpec("p", ("10.0.0.0/24",), ipv4_mask=24),  # one block: the node mask may equal the prefix
        PoolSpec(
            "p", ("fd00::/48",), reserved=("fd00::/64",), masquerade=MasqueradeSpec(("fd00::/8",), True)
        ),
    ],
)
def test_validate_pool_accepts(spec: PoolSpec) -> None:
    assert validate_pool(spec) == []


def test_validate_pools_blames_younger_pool() -> None:
    old = PoolSpec("zeta", ("10.0.0.0/16",), creation_timestamp="2025-01-01T00:00:00Z")
    young = PoolSpec("alpha", ("10.0.5.0/24", "10.1.0.0/16"), creation_timestamp="2026-01-01T00:00:00Z")
    out = validate_pools([young, old])
    assert out["zeta"] == []
    assert (
        len(out["alpha"]) == 1
        and "spec.cidrs[0] 10.0.5.0/24 overlaps 10.0.0.0/16 of the older pool zeta" in (out["alpha"][0])
    )


def test_validate_pools_without_age_blames_second_name_or_explicit_order() -> None:
    a = PoolSpec("a", ("10.0.0.0/16",))
    b = PoolSpec("b", ("10.0.0.0/16",))
    assert validate_pools([b, a]) == {"a": [], "b": [validate_pools([a, b])["b"][0]]}
    out = validate_pools([a, b], order=["b", "a"])
    assert out["b"] == [] and "older pool b" in out["a"][0]


def test_validate_pools_families_do_not_overlap_and_duplicates_reported() -> None:
    assert validate_pools([PoolSpec("a", ("10.0.0.0/16",)), PoolSpec("b", ("fd00::/56",))]) == {
        "a": [],
        "b": [],
    }
    out = validate_pools([PoolSpec("a", ("10.0.0.0/16",)), PoolSpec("a", ("10.1.0.0/16",))])
    assert any("used by more than one pool" in p for p in out["a"])


def test_route_scope_is_every_parsable_pool_cidr_and_the_strictest_warning() -> None:
    """The controller and `routectl plan` derive route ownership and warnings from this one function."""
    from routectl.ipam.model import MasqueradeSpec, PoolSpec, route_scope

    def spec(name: str, cidrs: tuple[str, ...], warn: int) -> PoolSpec:
        return PoolSpec(name=name, cidrs=cidrs, ipv4_mask=24, ipv6_mask=64, node_selector={}, reserved=(),
                        masquerade=MasqueradeSpec((), False), route_limit_warning_percent=warn)

    cidrs, warn = route_scope([spec("b", ("10.245.0.0/16", "not-a-cidr"), 90),
                               spec("a", ("fd00:0::/48", "10.244.0.0/16"), 70)])
    assert cidrs == ("10.244.0.0/16", "10.245.0.0/16", "fd00::/48")
    assert warn == 70
    assert route_scope([]) == ((), 80)


def test_route_limit_fallback_defaults_to_none_and_parses_overlay() -> None:
    from routectl.ipam.errors import PoolSpecError
    from routectl.ipam.model import PoolSpec

    base = {"kind": "PodCIDRPool", "metadata": {"name": "p"}, "spec": {"cidrs": ["10.244.0.0/16"]}}
    spec = PoolSpec.from_resource(base)
    assert spec.route_limit_fallback == "None" and not spec.overlay_fallback
    assert "routeLimitFallback" not in spec.to_resource()["spec"]  # today's pools render as today
    over = PoolSpec.from_resource({**base, "spec": {**base["spec"], "routeLimitFallback": "Overlay"}})
    assert over.overlay_fallback and PoolSpec.from_resource(over.to_resource()) == over
    with pytest.raises(PoolSpecError, match="routeLimitFallback must be one of None, Overlay"):
        PoolSpec.from_resource({**base, "spec": {**base["spec"], "routeLimitFallback": "overlay"}})
