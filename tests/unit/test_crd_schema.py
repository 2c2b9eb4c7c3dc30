"""The PodCIDRPool CRD: structural-schema rules of the API server, field names, printer columns, packaging.

No API server runs here, so acceptance is shown by (a) the structural-schema rules checked by a walker,
(b) a round trip through the official kubernetes client's V1CustomResourceDefinition model (a misspelled
field is dropped and the round trip differs), and (c) the examples validated with jsonschema
(test_crd_examples.py) and the CEL rules mirrored in Python (test_crd_cel.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from routectl import constants
from routectl.crd import SOURCE_PATH, crd_text, load_crd, openapi_schema

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "routectl" / "data" / "podcidrpool.yaml"

# Every keyword of apiextensions.k8s.io/v1 JSONSchemaProps that a structural schema may use.
ALLOWED_KEYWORDS = {
    "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "multipleOf", "enum",
    "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
    "additionalProperties", "nullable", "example", "externalDocs",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
    "x-kubernetes-validations",
}  # fmt: skip
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties, items and additionalProperties followed)."""
    out = [(path or "<root>", schema)]
    for name, sub in (schema.get("properties") or {}).items():
        out += walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += walk(schema["additionalProperties"], f"{path}{{}}")
    return out


SCHEMA = openapi_schema()
NODES = walk(SCHEMA)


def test_packaged_copy_is_identical() -> None:
    assert SOURCE_PATH == ROOT / "crds" / "podcidrpool.yaml"
    assert PACKAGED.read_bytes() == SOURCE_PATH.read_bytes(), (
        "routectl/data/podcidrpool.yaml differs from crds/podcidrpool.yaml: copy crds/ over it"
    )
    assert crd_text() == SOURCE_PATH.read_text()
    assert load_crd() == yaml.safe_load(SOURCE_PATH.read_text())
    c = load_crd()
    c["spec"] = None
    assert load_crd()["spec"] is not None  # callers get their own copy


def test_names_scope_and_subresources_match_constants() -> None:
    crd = load_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{constants.POOL_PLURAL}.{constants.GROUP}"
    spec = crd["spec"]
    assert spec["group"] == constants.GROUP and spec["scope"] == "Cluster"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        constants.POOL_KIND,
        constants.POOL_PLURAL,
        constants.POOL_SINGULAR,
    )
    assert tuple(names["shortNames"]) == constants.POOL_SHORT_NAMES
    (version,) = spec["versions"]
    assert version["name"] == constants.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_round_trip_through_official_client_model_keeps_every_field() -> None:
    from kubernetes import client

    api = client.ApiClient()
    crd = load_crd()
    model = api.deserialize(json.dumps(crd), "V1CustomResourceDefinition", "application/json")
    assert api.sanitize_for_serialization(model) == crd


def test_round_trip_detects_a_misspelled_field() -> None:
    from kubernetes import client

    api = client.ApiClient()
    crd = load_crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validation"
    ] = []
    model = api.deserialize(json.dumps(crd), "V1CustomResourceDefinition", "application/json")
    assert api.sanitize_for_serialization(model) != crd


def test_root_and_metadata() -> None:
    assert SCHEMA["type"] == "object"
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}  # no restrictions beyond name allowed
    assert set(SCHEMA["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


@pytest.mark.parametrize(("path", "node"), NODES, ids=[p for p, _ in NODES])
def test_structural_node(path: str, node: dict[str, Any]) -> None:
    unknown = set(node) - ALLOWED_KEYWORDS
    assert not unknown, f"{path}: keywords not allowed in a structural schema: {unknown}"
    exempt = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    assert exempt or node.get("type") in TYPES, f"{path}: every node needs a type"
    assert node.get("uniqueItems") is not True, f"{path}: uniqueItems: true is forbidden"
    assert not ("properties" in node and "additionalProperties" in node), (
        f"{path}: both properties/additional"
    )
    if node.get("type") == "array":
        assert isinstance(node.get("items"), dict), f"{path}: arrays need an items schema"
    for req in node.get("required", []):
        assert req in node.get("properties", {}), f"{path}: required {req} is not a property"
    if "default" in node:
        jsonschema.Draft7Validator(node).validate(node["default"])
    if "pattern" in node:
        import re

        re.compile(node["pattern"])


@pytest.mark.parametrize(("path", "node"), [(p, n) for p, n in NODES if "x-kubernetes-list-type" in n])
def test_list_types(path: str, node: dict[str, Any]) -> None:
    lt = node["x-kubernetes-list-type"]
    assert node["type"] == "array" and lt in {"atomic", "set", "map"}
    items = node["items"]
    if lt == "set":
        assert items["type"] in {"string", "integer", "number", "boolean"}, (
            f"{path}: set items must be scalar"
        )
        assert "x-kubernetes-list-map-keys" not in node
    if lt == "map":
        keys = node["x-kubernetes-list-map-keys"]
        assert items["type"] == "object" and keys
        for k in keys:
            assert k in items["properties"] and (
                k in items.get("required", []) or "default" in items["properties"][k]
            )


def _under_non_map_list(path: str) -> bool:
    """True when `path` passes through the items of a list that is not a map list (no oldSelf there)."""
    parts = path.split("[]")[:-1]
    prefix = ""
    for part in parts:
        prefix += part
        node = dict(NODES)[prefix or "<root>"]
        if node.get("x-kubernetes-list-type") != "map":
            return True
        prefix += "[]"
    return False


CEL_NODES = [(p, n) for p, n in NODES if "x-kubernetes-validations" in n]


@pytest.mark.parametrize(("path", "node"), CEL_NODES, ids=[p for p, _ in CEL_NODES])
def test_cel_rules_well_formed(path: str, node: dict[str, Any]) -> None:
    for rule in node["x-kubernetes-validations"]:
        assert set(rule) <= {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}
        assert isinstance(rule["rule"], str) and rule["rule"].strip()
        msg = rule["message"]
        assert msg.strip() and "\n" not in msg, f"{path}: a message must be one line"
        if "oldSelf" in rule["rule"]:
            assert not _under_non_map_list(path), f"{path}: transition rules cannot sit under a non-map list"
    # Cost bounds: every list and string a rule can reach is bounded.
    for sub_path, sub in walk(node, path):
        if sub.get("type") == "array":
            assert "maxItems" in sub, f"{sub_path}: CEL cost needs maxItems"
        if sub.get("type") == "string":
            assert "maxLength" in sub or "enum" in sub, f"{sub_path}: CEL cost needs maxLength"


def test_cel_strings_are_bounded() -> None:
    for path in (".spec.cidrs[]", ".spec.reservedCIDRs[]", ".spec.masquerade.nonMasqueradeCIDRs[]"):
        assert dict(NODES)[path]["maxLength"] == 43  # the longest IPv6 CIDR text


def resolve(path: str) -> dict[str, Any] | None:
    """Schema node of a simple printer-column jsonPath (.a.b, .a[?(...)].b)."""
    node: dict[str, Any] | None = SCHEMA
    for part in path.strip(".").split("."):
        if node is None:
            return None
        if "[" in part:
            part = part.split("[", 1)[0]
            node = node.get("properties", {}).get(part)
            node = node.get("items") if node else None
        else:
            node = node.get("properties", {}).get(part)
    return node


def test_printer_columns() -> None:
    cols = load_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in cols]
    assert [n for n in names if n != "Mask6"] == [
        "CIDRs",
        "Mask",
        "Allocated",
        "Free",
        "Routes",
        "Overlay",
        "Ready",
        "Age",
    ]
    for c in cols:
        assert c["type"] in {"integer", "number", "string", "boolean", "date"}
        if c["name"] == "Age":
            assert c["jsonPath"] == ".metadata.creationTimestamp"
            continue
        path = c["jsonPath"].replace('[?(@.type=="Ready")]', "[]")
        assert resolve(path) is not None, (
            f"printer column {c['name']} points at a missing field {c['jsonPath']}"
        )


def test_spec_fields_and_defaults() -> None:
    spec = SCHEMA["properties"]["spec"]
    assert spec["required"] == ["cidrs"]
    p = spec["properties"]
    assert p["cidrs"]["minItems"] == 1
    assert p["nodeMaskSizeIPv4"]["default"] == constants.DEFAULT_IPV4_MASK
    assert p["nodeMaskSizeIPv6"]["default"] == constants.DEFAULT_IPV6_MASK
    assert p["routeLimitWarningPercent"]["default"] == constants.DEFAULT_ROUTE_LIMIT_WARNING_PERCENT
    assert p["masquerade"]["properties"]["masqLinkLocal"]["default"] is False
    assert p["nodeSelector"]["additionalProperties"] == {"type": "string", "maxLength": 63}


def test_status_fields_and_condition_types_documented() -> None:
    status = SCHEMA["properties"]["status"]["properties"]
    for field in ("observedGeneration", "allocated", "capacity", "free", "routesProgrammed"):
        assert status[field]["type"] == "integer"
    assert set(status["routeTables"]["items"]["properties"]) == {"id", "used", "limit", "limitSource", "note"}
    from routectl.routes.model import TableCapacity

    # what the controller writes is what the schema declares (no field pruned by the API server)
    cap = TableCapacity("rtb-1", 3, 500, "q", "h", "aws", family="ipv6", source="learned", note="n")
    assert set(cap.status_entry()) <= set(status["routeTables"]["items"]["properties"])
    cond = status["conditions"]["items"]
    assert set(cond["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    for t in (
        constants.POOL_READY,
        constants.POOL_EXHAUSTED,
        constants.POOL_ROUTE_LIMIT_NEARING,
        constants.POOL_ROUTE_LIMIT_REACHED,
        constants.POOL_INVALID,
    ):
        assert t in status["conditions"]["description"]


def test_installed_package_reads_its_packaged_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Outside a source checkout (no crds/ next to the package) the packaged YAML is used."""
    import routectl.crd as crd_module

    monkeypatch.setattr(crd_module, "SOURCE_PATH", tmp_path / "missing.yaml")
    assert crd_module.crd_text() == PACKAGED.read_text()
