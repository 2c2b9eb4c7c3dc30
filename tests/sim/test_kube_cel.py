"""CEL x-kubernetes-validations in the emulator: scope, transition rules, messages, fieldPath, reason,
ratcheting, the Kubernetes CIDR/IP libraries, and CRDs whose rules do not compile."""

from __future__ import annotations

from typing import Any

import pytest

from routectl.sim import kube_cel
from routectl.sim.kube import KubeServer
from routectl.sim.kube_store import ApiError
from tests.sim.conftest import pool_crd


def rules(schema: dict[str, Any]) -> kube_cel.Node | None:
    return kube_cel.compile_schema(schema)


def check(schema: dict[str, Any], new: Any, old: Any = kube_cel.MISSING) -> list[str]:
    return [str(c) for c in kube_cel.validate(rules(schema), new, old)]


def test_message_expression_field_path_and_reason() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' > max'",
         "fieldPath": ".min", "reason": "FieldValueForbidden"},
        {"rule": "size(self.name) > 0"},  # no message: upstream's default wording
    ]}}}
    assert check(schema, {"spec": {"min": 3, "max": 1, "name": ""}}) == [
        "spec.min: Forbidden: min 3 > max", "spec: Invalid value: failed rule: size(self.name) > 0"]


def test_transition_rules_need_a_correlated_old_value() -> None:
    item_rule = {"rule": "self.cidr == oldSelf.cidr", "message": "cidr is immutable"}
    schema = {"type": "object", "properties": {"routes": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "x-kubernetes-validations": [item_rule]}}}}
    old = {"routes": [{"name": "a", "cidr": "10.0.0.0/8"}]}
    assert check(schema, old) == []  # create: no oldSelf, transition rules skipped
    assert check(schema, {"routes": [{"name": "a", "cidr": "10.0.0.0/8"}, {"name": "b", "cidr": "x"}]},
                 old) == []  # a new key has nothing to correlate with
    assert check(schema, {"routes": [{"name": "a", "cidr": "11.0.0.0/8"}]}, old) == [
        "routes[0]: Invalid value: cidr is immutable"]
    atomic = {"type": "object", "properties": {"routes": {"type": "array", "items": {
        "type": "object", "x-kubernetes-validations": [item_rule]}}}}
    assert check(atomic, {"routes": [{"name": "a", "cidr": "11.0.0.0/8"}]}, old) == []  # atomic: never


def test_unchanged_values_are_ratcheted_on_update() -> None:
    item = {"type": "string", "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "bad"}]}
    schema = {"type": "object", "properties": {"cidrs": {"type": "array", "x-kubernetes-list-type": "set",
                                                         "items": item}}}
    stored = {"cidrs": ["legacy-junk"]}  # stored before the rule existed
    assert check(schema, stored) == ['cidrs[0]: Invalid value: "legacy-junk": bad']
    assert check(schema, {"cidrs": ["legacy-junk", "10.0.0.0/8"]}, stored) == []
    assert check(schema, {"cidrs": ["legacy-junk", "nope"]}, stored) == [
        'cidrs[1]: Invalid value: "nope": bad']


@pytest.mark.parametrize(("expr", "value", "expected"), [
    ("isCIDR(self)", "10.0.0.0/8", True),
    ("isCIDR(self)", "10.0.0.0/08", False),  # Go netip: no leading zeros in the bits
    ("isCIDR(self)", "010.0.0.0/8", False),
    ("isCIDR(self)", "10.0.0.1", False),
    ("isCIDR(self)", "fe80::1%eth0/64", False),
    ("cidr(self).ip() == ip('10.1.2.3')", "10.1.2.3/8", True),
    ("cidr(self).masked() == cidr('10.0.0.0/8')", "10.1.2.3/8", True),
    ("cidr(self) == cidr('10.0.0.0/8')", "10.1.2.3/8", False),
    ("cidr(self).ip().family() == 6 && cidr(self).prefixLength() == 56", "fd00::/56", True),
    ("cidr(self).containsIP('10.9.9.9') && !cidr(self).containsIP('11.0.0.1')", "10.0.0.0/8", True),
    ("cidr(self).containsCIDR('10.1.0.0/16') && !cidr(self).containsCIDR('fd00::/8')", "10.0.0.0/8",
     True),
    ("isIP(self) && ip(self).isLoopback()", "127.0.0.1", True),
    ("isIP(self)", "::ffff:10.0.0.1", False),  # IPv4-mapped IPv6 is refused by the Kubernetes library
    ("ip(self).isGlobalUnicast()", "8.8.8.8", True),
])
def test_kubernetes_cidr_and_ip_libraries(expr: str, value: str, expected: bool) -> None:
    assert kube_cel.compile_expression(expr).execute({"self": value}) is expected


@pytest.mark.parametrize(("rule", "why"), [("isCIDR(self", "compilation failed"),
                                           ("isCIRD(self)", "undeclared reference to 'isCIRD'")])
def test_a_crd_whose_rule_does_not_compile_is_refused(kube: KubeServer, rule: str, why: str) -> None:
    crd = pool_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    cidrs = spec["properties"]["cidrs"]
    cidrs["items"]["x-kubernetes-validations"] = [{"rule": rule, "message": "m"}]
    with pytest.raises(ApiError) as exc:
        kube.install_crd(crd)
    assert exc.value.code == 422 and why in exc.value.message
    assert "properties[cidrs].items.x-kubernetes-validations[0].rule" in exc.value.message
    assert not kube.exists("apiextensions.k8s.io/v1", "CustomResourceDefinition", "podcidrpools.routectl.io")


def test_a_rule_added_later_refuses_new_values_but_not_objects_that_predate_it(kube: KubeServer) -> None:
    api = "routectl.io/v1alpha1"
    kube.install_crd(pool_crd())
    kube.create({"apiVersion": api, "kind": "PodCIDRPool", "metadata": {"name": "old"},
                 "spec": {"cidrs": ["junk"]}})
    crd = pool_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.cidrs.all(c, isCIDR(c))", "message": "CIDRs only"}]
    kube.install_crd(crd)  # the CRD is updated in place; its rules apply from now on
    with pytest.raises(ApiError) as exc:
        kube.create({"apiVersion": api, "kind": "PodCIDRPool", "metadata": {"name": "new"},
                     "spec": {"cidrs": ["junk"]}})
    assert exc.value.code == 422 and exc.value.message.endswith("spec: Invalid value: CIDRs only")
    kube.patch_status(api, "PodCIDRPool", "old", {"status": {"allocated": 1}})  # spec unchanged: ratcheted
    kube.patch(api, "PodCIDRPool", "old", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiError):
        kube.patch(api, "PodCIDRPool", "old", {"spec": {"cidrs": ["junk", "more-junk"]}})


def test_status_on_main_resource_writes_is_ignored(kube: KubeServer) -> None:
    """A CRD with a status subresource: create, merge patch and PUT of the main resource drop .status."""
    kube.install_crd(pool_crd())
    api = "routectl.io/v1alpha1"
    created = kube.create({"apiVersion": api, "kind": "PodCIDRPool", "metadata": {"name": "p"},
                           "spec": {"cidrs": ["10.0.0.0/16"]}, "status": {"allocated": 5}})
    assert "status" not in created
    kube.patch_status(api, "PodCIDRPool", "p", {"status": {"allocated": 1}})
    patched = kube.patch(api, "PodCIDRPool", "p",
                         {"spec": {"nodeMaskSizeIPv4": 25}, "status": {"allocated": 9}})
    assert patched["status"] == {"allocated": 1} and patched["spec"]["nodeMaskSizeIPv4"] == 25
    current = kube.get(api, "PodCIDRPool", "p")
    replaced = kube.call(lambda s: s.update(s.find_type(api, "PodCIDRPool"), None, "p",
                                            {**current, "status": {"allocated": 7}}))
    assert replaced["status"] == {"allocated": 1}
    assert replaced["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]  # a no-op
