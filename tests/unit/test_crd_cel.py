"""The CRD's CEL rules, evaluated by their Python equivalents (no API server here).

Every rule string in crds/podcidrpool.yaml must have a mirror below (the test fails if one is added or
edited without updating its mirror). The evaluator applies schema defaults first and runs transition
rules (those using oldSelf) only on updates where the old value exists, as the API server does.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from routectl.crd import openapi_schema
from routectl.ipam.model import PoolSpec
from routectl.ipam.validate import non_masquerade_problem, validate_pool

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "deploy" / "examples").glob("*.yaml"))
SCHEMA = openapi_schema()


def is_cidr(s: str) -> bool:
    """CEL isCIDR (Go netip.ParsePrefix): an address and a prefix length; host bits allowed."""
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def no_host_bits(s: str) -> bool:
    iface = ipaddress.ip_interface(s)
    return iface.ip == iface.network.network_address


def masks_fit(spec: dict[str, Any], fam: int) -> bool:
    mask = spec["nodeMaskSizeIPv4" if fam == 4 else "nodeMaskSizeIPv6"]
    for c in spec["cidrs"]:
        if not is_cidr(c):
            continue
        net = ipaddress.ip_network(c, strict=False)
        if net.version == fam and not (net.prefixlen <= mask and mask - net.prefixlen <= 16):
            return False
    return True


Rule = Callable[[Any, Any], bool]
MIRRORS: dict[str, Rule] = {
    "isCIDR(self)": lambda self, old: is_cidr(self),
    "!isCIDR(self) || cidr(self) == cidr(self).masked()": lambda self, old: (
        not is_cidr(self) or no_host_bits(self)
    ),
    "!isCIDR(self) || cidr(self).prefixLength() >= 8": lambda self, old: (
        not is_cidr(self) or ipaddress.ip_network(self, strict=False).prefixlen >= 8
    ),
    "oldSelf.all(c, c in self)": lambda self, old: all(c in self for c in old),
    "self == oldSelf": lambda self, old: self == old,
    (
        "self.cidrs.all(c, !isCIDR(c) || cidr(c).ip().family() != 4 || (cidr(c).prefixLength() <= "
        "self.nodeMaskSizeIPv4 && self.nodeMaskSizeIPv4 - cidr(c).prefixLength() <= 16))"
    ): lambda self, old: masks_fit(self, 4),
    (
        "self.cidrs.all(c, !isCIDR(c) || cidr(c).ip().family() != 6 || (cidr(c).prefixLength() <= "
        "self.nodeMaskSizeIPv6 && self.nodeMaskSizeIPv6 - cidr(c).prefixLength() <= 16))"
    ): lambda self, old: masks_fit(self, 6),
}

_MISSING = object()


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting: fill missing object fields that have a default, recursively."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


def collect_rules(schema: dict[str, Any]) -> list[str]:
    out = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
    for sub in (schema.get("properties") or {}).values():
        out += collect_rules(sub)
    if isinstance(schema.get("items"), dict):
        out += collect_rules(schema["items"])
    return out


def evaluate(schema: dict[str, Any], value: Any, old: Any = _MISSING, path: str = "") -> list[str]:
    """Messages of every failing rule (transition rules only where an old value exists)."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is _MISSING:
            continue
        if not MIRRORS[rule["rule"]](value, None if old is _MISSING else old):
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                o = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
                errors += evaluate(sub, value[name], o, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):  # items of set/atomic lists are not correlated with old values
            errors += evaluate(schema["items"], v, _MISSING, f"{path}[{i}]")
    return errors


def create(obj: dict[str, Any]) -> list[str]:
    return evaluate(SCHEMA, apply_defaults(SCHEMA, copy.deepcopy(obj)))


def update(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return evaluate(
        SCHEMA, apply_defaults(SCHEMA, copy.deepcopy(new)), apply_defaults(SCHEMA, copy.deepcopy(old))
    )


def pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "routectl.io/v1alpha1",
        "kind": "PodCIDRPool",
        "metadata": {"name": "p"},
        "spec": spec,
    }


def test_every_rule_has_a_mirror() -> None:
    rules = collect_rules(SCHEMA)
    assert rules, "the CRD has no CEL rules"
    assert set(rules) == set(MIRRORS), "a CEL rule changed: update its Python mirror in this file"


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
    assert any(e.startswith(".spec.masquerade.nonMasqueradeCIDRs[") and fragment in e for e in errors), errors
    wide = [m for m in problems if "spec.masquerade.nonMasqueradeCIDRs[" in m and "is too wide" in m]
    assert len(wide) == sum(1 for c in non_masq if ipaddress.ip_network(c).prefixlen < 8), problems


def test_too_wide_pool_cidr_is_refused_even_when_its_block_count_fits() -> None:
    """Pool CIDRs are RETURN rules on every node, so the same width rule applies to them."""
    obj = pool(cidrs=["fc00::/7"], nodeMaskSizeIPv6=23)  # 2^16 blocks: only the width is wrong
    errors = create(obj)
    assert len(errors) == 1 and errors[0].startswith(".spec.cidrs[0]") and "/8 or longer" in errors[0]
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
    assert any(e.startswith(".spec.reservedCIDRs[0]") for e in errors)
    errors = create(pool(cidrs=["10.0.0.0/16"], masquerade={"nonMasqueradeCIDRs": ["vpc"]}))
    assert any(e.startswith(".spec.masquerade.nonMasqueradeCIDRs[0]") for e in errors)


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
