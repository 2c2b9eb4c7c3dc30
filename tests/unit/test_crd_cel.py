"""The CRD's CEL rules, evaluated as written (the emulator's CEL engine, routectl.sim.kube_cel).

No Python mirror of any rule: the rule text in crds/podcidrpool.yaml is what runs, with schema defaults
applied first and transition rules (oldSelf) only on updates where the old value exists, as the API
server does. The parity with a real kube-apiserver is tests/sim/test_crd_parity.py.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from routectl.crd import openapi_schema
from routectl.ipam.model import PoolSpec
from routectl.ipam.validate import non_masquerade_problem, validate_pool
from routectl.sim import kube_cel
from routectl.sim.kube_schema import apply_defaults

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "deploy" / "examples").glob("*.yaml"))
SCHEMA = openapi_schema()
RULES = kube_cel.compile_schema(SCHEMA)


def _count(node: kube_cel.Node | None) -> int:
    if node is None:
        return 0
    return (len(node.rules) + sum(_count(c) for c in node.properties.values()) + _count(node.additional)
            + _count(node.items))


def create(obj: dict[str, Any]) -> list[str]:
    return [str(c) for c in kube_cel.validate(RULES, apply_defaults(copy.deepcopy(obj), SCHEMA))]


def update(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [str(c) for c in kube_cel.validate(RULES, apply_defaults(copy.deepcopy(new), SCHEMA),
                                              apply_defaults(copy.deepcopy(old), SCHEMA))]


def pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "routectl.io/v1alpha1",
        "kind": "PodCIDRPool",
        "metadata": {"name": "p"},
        "spec": spec,
    }


def test_every_rule_of_the_crd_compiles() -> None:
    text = (Path(__file__).resolve().parents[2] / "crds" / "podcidrpool.yaml").read_text()
    assert RULES is not None and _count(RULES) == text.count("- rule:") == 11


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_cel_and_updates_to_themselves(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert create(obj) == []
    assert update(obj, obj) == []


@pytest.mark.parametrize(
    ("cidrs", "fragment"),
    [
        (["999.0.0.0/8"], "must be a CIDR"),  # passes the coarse pattern, fails isCIDR
        (["10.0.0.0/40"], "must be a CIDR"),
        (["fd00::zz/56"], "must be a CIDR"),
        (["10.244.1.0/16"], "must not have host bits set"),
        (["fd00:10:244::1/56"], "must not have host bits set"),
        (["10.0.0.0/8"], None),
        (["10.0.0.0/7"], "at most 65536 node blocks"),  # 2^17 /24 blocks
        (["10.0.0.0/25"], "no longer than nodeMaskSizeIPv4"),
        (["fd00::/47"], "at most 65536 node blocks"),
        (["fd00::/48", "10.0.0.0/16"], None),
    ],
)
def test_create_rules(cidrs: list[str], fragment: str | None) -> None:
    errors = create(pool(cidrs=cidrs))
    if fragment is None:
        assert errors == []
    else:
        assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (pool(cidrs=["10.0.0.0/16"]), pool(cidrs=["10.0.0.0/16", "10.1.0.0/16"]), None),  # append
        (pool(cidrs=["10.0.0.0/16", "10.1.0.0/16"]), pool(cidrs=["10.1.0.0/16", "10.0.0.0/16"]), None),
        (pool(cidrs=["10.0.0.0/16", "10.1.0.0/16"]), pool(cidrs=["10.0.0.0/16"]), "append-only"),
        (pool(cidrs=["10.0.0.0/16"]), pool(cidrs=["10.2.0.0/16"]), "append-only"),
        (
            pool(cidrs=["10.0.0.0/16"]),
            pool(cidrs=["10.0.0.0/16"], nodeMaskSizeIPv4=25),
            "nodeMaskSizeIPv4 is immutable",
        ),
        (
            pool(cidrs=["10.0.0.0/16"], nodeMaskSizeIPv4=24),
            pool(cidrs=["10.0.0.0/16"]),
            None,
        ),  # default = same
        (
            pool(cidrs=["fd00::/56"]),
            pool(cidrs=["fd00::/56"], nodeMaskSizeIPv6=80),
            "nodeMaskSizeIPv6 is immutable",
        ),
        (pool(cidrs=["10.0.0.0/16"]), pool(cidrs=["10.0.0.0/16"], nodeSelector={"a": "b"}), None),
        (
            pool(cidrs=["10.0.0.0/16"]),
            pool(
                cidrs=["10.0.0.0/16"],
                masquerade={"nonMasqueradeCIDRs": ["10.0.0.0/8"], "masqLinkLocal": True},
            ),
            None,
        ),
    ],
)
def test_update_rules(old: dict[str, Any], new: dict[str, Any], fragment: str | None) -> None:
    errors = update(old, new)
    if fragment is None:
        assert errors == []
    else:
        assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("non_masq", "fragment"),
    [
        (["10.0.0.0/16"], None),
        (["10.0.0.0/8", "fd00::/8"], None),
        (["0.0.0.0/0"], "must be /8 or longer"),
        (["10.0.0.0/16", "::/0"], "must be /8 or longer"),
        (["0.0.0.0/1", "128.0.0.0/1"], "must be /8 or longer"),
        (["10.0.0.0/7"], "must be /8 or longer"),
        (["fc00::/7"], "must be /8 or longer"),
    ],
)
def test_too_wide_non_masquerade_cidrs_are_refused_by_cel_and_python(
    non_masq: list[str], fragment: str | None
) -> None:
    obj = pool(cidrs=["10.244.0.0/16"], masquerade={"nonMasqueradeCIDRs": non_masq})
    errors = create(obj)
    problems = validate_pool(PoolSpec.from_resource(obj))
    if fragment is None:
        assert errors == [] and problems == []
        return
    assert any(e.startswith("spec.masquerade.nonMasqueradeCIDRs[") and fragment in e for e in errors), errors
    wide = [m for m in problems if "spec.masquerade.nonMasqueradeCIDRs[" in m and "is too wide" in m]
    assert len(wide) == sum(1 for c in non_masq if ipaddress.ip_network(c).prefixlen < 8), problems


def test_too_wide_pool_cidr_is_refused_even_when_its_block_count_fits() -> None:
    """Pool CIDRs are RETURN rules on every node, so the same width rule applies to them."""
    obj = pool(cidrs=["fc00::/7"], nodeMaskSizeIPv6=23)  # 2^16 blocks: only the width is wrong
    errors = create(obj)
    assert len(errors) == 1 and errors[0].startswith("spec.cidrs[0]") and "/8 or longer" in errors[0]
    problems = validate_pool(PoolSpec.from_resource(obj))
    assert len(problems) == 1 and "spec.cidrs[0] fc00::/7 is too wide" in problems[0]


@settings(max_examples=200, deadline=None)
@given(v6=st.booleans(), prefix=st.integers(0, 128))
def test_cel_and_python_validator_agree_on_non_masquerade_width(v6: bool, prefix: int) -> None:
    """The CEL rule, validate_pool and the agent's rule (non_masquerade_problem) are one definition."""
    maxlen = 128 if v6 else 32
    if prefix > maxlen:
        return
    net = ipaddress.ip_network(("fd00::" if v6 else "10.0.0.0", prefix), strict=False)
    obj = pool(cidrs=["10.244.0.0/16"], masquerade={"nonMasqueradeCIDRs": [str(net)]})
    cel_ok = create(obj) == []
    py_ok = validate_pool(PoolSpec.from_resource(obj)) == []
    assert cel_ok == py_ok == (non_masquerade_problem(net, "x") is None), net


def test_other_cidr_lists_are_checked() -> None:
    errors = create(pool(cidrs=["10.0.0.0/16"], reservedCIDRs=["10.96.0.300/12"]))
    assert any(e.startswith("spec.reservedCIDRs[0]") for e in errors)
    errors = create(pool(cidrs=["10.0.0.0/16"], masquerade={"nonMasqueradeCIDRs": ["vpc"]}))
    assert any(e.startswith("spec.masquerade.nonMasqueradeCIDRs[0]") for e in errors)


@settings(max_examples=200, deadline=None)
@given(v6=st.booleans(), prefix=st.integers(1, 128), mask=st.integers(1, 128))
def test_cel_and_python_validator_agree_on_mask_and_size(v6: bool, prefix: int, mask: int) -> None:
    """What the API server refuses at admission, validate_pool refuses too (and vice versa)."""
    maxlen = 128 if v6 else 32
    if prefix > maxlen or mask > maxlen:
        return
    net = ipaddress.ip_network(("fd00::" if v6 else "0.0.0.0", prefix), strict=False)
    spec = {"cidrs": [str(net)], "nodeMaskSizeIPv6" if v6 else "nodeMaskSizeIPv4": mask}
    cel_ok = create(pool(**spec)) == []
    py_ok = validate_pool(PoolSpec.from_resource(pool(**spec))) == []
    assert cel_ok == py_ok, (net, mask)
