"""Validation of built-in objects as kube-apiserver does it: names, labels/annotations/finalizers, Node
podCIDRs, core/v1 Event namespaces and CustomResourceDefinitions (custom resources are validated by their
schema, :mod:`kube_schema`, and their CEL rules, :mod:`kube_cel`). Pure: each raises a 422 ApiError."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Container

from routectl.sim import kube_cel
from routectl.sim.kube_types import Obj, ResKey, ResourceType, invalid, meta_of

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_NAME_PART_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _qualified_name(key: str) -> bool:
    """A label/annotation key or finalizer: ``[dns-subdomain/]name`` with a name part of 63 chars at most."""
    prefix, _, part = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _NAME_RE.match(prefix)):
        return False
    return bool(_NAME_PART_RE.match(part))


def validate_name(rt: ResourceType, name: str) -> None:
    """metadata.name: a DNS subdomain (RFC 1123), as most resources require."""
    if len(name) > 253 or not _NAME_RE.match(name):
        raise invalid(rt, name, [f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 "
                                 "subdomain must consist of lower case alphanumeric characters, '-' "
                                 "or '.', and must start and end with an alphanumeric character"])

def validate_meta(rt: ResourceType, name: str, obj: Obj) -> None:
    """Labels, annotations, finalizers and top-level field types, checked as upstream does."""
    meta = meta_of(obj)
    causes: list[str] = []
    for field_name in ("labels", "annotations"):
        value = meta.get(field_name)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in value.items()):
            causes.append(f"metadata.{field_name}: Invalid value: must be a map of strings to strings")
            continue
        for key, val in value.items():
            if not _qualified_name(key):
                causes.append(f"metadata.{field_name}: Invalid value: {key!r}: name part must consist of "
                              "alphanumeric characters, '-', '_' or '.', with an optional DNS prefix")
            if field_name == "labels" and not _LABEL_VALUE_RE.match(val):
                causes.append(f"metadata.labels: Invalid value: {val!r}: a valid label must be an empty "
                              "string or 63 alphanumeric characters, '-', '_' or '.' at most")
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
            not isinstance(finalizers, list)
            or not all(isinstance(f, str) and _qualified_name(f) for f in finalizers)):
        causes.append(f"metadata.finalizers: Invalid value: {finalizers!r}: must be qualified names")
    for top in ("spec", "status"):
        if top in obj and obj[top] is not None and not isinstance(obj[top], dict) and not rt.schemas:
            causes.append(f"{top}: Invalid value: must be an object")
    if causes:
        raise invalid(rt, name, causes)

def validate_event(rt: ResourceType, name: str, event: Obj) -> None:
    """core/v1 Event namespaces as kube-apiserver's ValidateEventCreate/Update (legacy rules) check them.

    A namespaced involvedObject's Event lives in that namespace; a cluster-scoped one's (namespace "")
    only in "default" (or "" for old clients), or also in "kube-system" when eventTime is set.
    """
    involved = event.get("involvedObject")
    involved_ns = str(involved.get("namespace") or "") if isinstance(involved, dict) else ""
    namespace = meta_of(event).get("namespace") or ""
    if involved_ns:
        ok = namespace == involved_ns
    elif event.get("eventTime"):
        ok = namespace in ("default", "kube-system")
    else:
        ok = namespace in ("", "default")
    if not ok:
        raise invalid(rt, name, [f"involvedObject.namespace: Invalid value: {json.dumps(involved_ns)}: "
                                 "does not match event.namespace"])

def normalise_node(obj: Obj) -> None:
    """Keep spec.podCIDR and spec.podCIDRs[0] together, as the API server does."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("podCIDRs"):
        spec["podCIDR"] = spec["podCIDRs"][0]
    elif spec.get("podCIDR"):
        spec["podCIDRs"] = [spec["podCIDR"]]

def validate_node(rt: ResourceType, name: str, new: Obj, old: Obj | None) -> None:
    """Node podCIDRs: valid CIDRs, one per family, podCIDR == podCIDRs[0], set once."""
    spec = new.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    causes: list[str] = []
    if spec.get("podCIDR") and spec.get("podCIDRs") and spec["podCIDRs"][0] != spec["podCIDR"]:
        causes.append("spec.podCIDRs[0]: Invalid value: must match spec.podCIDR")
    families = []
    for i, cidr in enumerate(cidrs):
        try:
            families.append(ipaddress.ip_network(cidr, strict=True).version)
        except ValueError as e:
            causes.append(f"spec.podCIDRs[{i}]: Invalid value: {cidr!r}: {e}")
    if len(cidrs) > 2 or len(set(families)) != len(families):
        causes.append("spec.podCIDRs: Invalid value: may specify no more than one CIDR for each IP "
                      "family")
    if old is not None:
        old_spec = old.get("spec") or {}
        old_cidrs = list(old_spec.get("podCIDRs") or [])
        if old_cidrs and old_cidrs != cidrs:
            causes.append("spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "
                          '"" to valid')
    if causes:
        raise invalid(rt, name, causes)

def validate_crd(rt: ResourceType, name: str, new: Obj, old: Obj | None, served: Container[ResKey]) -> None:
    """A CRD: names, scope, one storage version, immutable group/plural/scope, CEL rules that compile."""
    spec = new.get("spec")
    causes: list[str] = []
    if not isinstance(spec, dict):
        raise invalid(rt, name, ["spec: Required value"])
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    for f, v in (("spec.group", group), ("spec.names.plural", plural), ("spec.names.kind", kind)):
        if not v or not isinstance(v, str):
            causes.append(f"{f}: Required value")
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append('spec.scope: Unsupported value: must be "Namespaced" or "Cluster"')
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append("spec.versions: Required value")
        versions = []
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        causes.append("spec.versions: Invalid value: must have exactly one version marked as storage")
    if not causes and name != f"{plural}.{group}":
        causes.append(f"metadata.name: Invalid value: {name!r}: must be "
                      "spec.names.plural + '.' + spec.group")
    if old is not None and not causes:
        old_spec = old["spec"]
        if old_spec.get("group") != group or old_spec["names"].get("plural") != plural:
            causes.append("spec.group/spec.names.plural: Invalid value: field is immutable")
        if old_spec.get("scope") != spec.get("scope"):
            causes.append("spec.scope: Invalid value: field is immutable")
    if old is None and not causes and (group, plural) in served:
        causes.append(f"spec.names.plural: Invalid value: {plural!r}: already served in {group!r}")
    for i, v in enumerate(versions):  # a CEL rule that does not compile refuses the CRD, as upstream
        try:
            kube_cel.compile_schema(((v or {}).get("schema") or {}).get("openAPIV3Schema"),
                                    f"spec.versions[{i}].schema.openAPIV3Schema")
        except kube_cel.RuleCompileError as e:
            causes.append(str(e))
    if causes:
        raise invalid(rt, name, causes)

