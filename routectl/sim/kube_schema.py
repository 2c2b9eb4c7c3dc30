"""Structural-schema handling for custom resources, as kube-apiserver does it: prune, default, validate.

Pure functions over a CRD version's ``openAPIV3Schema``. Pruning drops fields the schema does not declare
(unless ``x-kubernetes-preserve-unknown-fields``), defaulting fills ``default`` values top-down, validation
uses jsonschema with ``nullable``, ``x-kubernetes-int-or-string`` and list-type ``set`` translated, its
errors worded as kube-openapi words them. CEL rules (``x-kubernetes-validations``) are evaluated by
:mod:`routectl.sim.kube_cel`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

from routectl.sim.kube_cel import FieldCause, field_cause

Schema = dict[str, Any]
ROOT_KEEP = ("apiVersion", "kind", "metadata")


def prune(value: Any, schema: Schema, root: bool = True) -> Any:
    """A copy of ``value`` without the object fields that ``schema`` does not declare."""
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return copy.deepcopy(value)
        props: dict[str, Schema] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in ROOT_KEEP:
                out[key] = copy.deepcopy(item)
            elif key in props:
                out[key] = prune(item, props[key], root=False)
            elif isinstance(extra, dict):
                out[key] = prune(item, extra, root=False)
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                out[key] = copy.deepcopy(item)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], root=False) for item in value]
    return copy.deepcopy(value)


def unknown_fields(value: Any, schema: Schema, path: str = "", root: bool = True) -> list[str]:
    """Dotted paths of the fields that :func:`prune` would drop (for strict field validation)."""
    found: list[str] = []
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return found
        props: dict[str, Schema] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if root and key in ROOT_KEEP:
                continue
            if key in props:
                found += unknown_fields(item, props[key], child, root=False)
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, child, root=False)
            elif not (extra is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                found.append(child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]", root=False)
    return found


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill ``default`` values for absent object fields, recursing into what exists (top-down, in place)."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in list(value):
                if key not in (schema.get("properties") or {}):
                    value[key] = apply_defaults(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def to_jsonschema(schema: Any) -> Any:
    """Translate the Kubernetes OpenAPI dialect into plain JSON Schema for validation."""
    if isinstance(schema, list):
        return [to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")
           and k not in ("nullable", "default", "format")}
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
    return out


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_GO_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "dict": "object",
             "list": "array", "NoneType": "null"}


def _cause(error: jsonschema.ValidationError) -> FieldCause:
    """One jsonschema error worded as kube-openapi's validator words it (``<path> in body should ...``)."""
    path, kind, arg = _path(error.absolute_path), error.validator, error.validator_value
    value = error.instance
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else ""
        return field_cause(f"{path}.{missing}" if path else missing, "FieldValueRequired", "")
    if kind == "uniqueItems":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                return field_cause(f"{path}[{i}]", "FieldValueDuplicate", "", item)
            seen.append(item)
    if kind == "enum":
        allowed = ", ".join(json.dumps(a) for a in arg)
        return FieldCause(path, "FieldValueNotSupported",
                          f"Unsupported value: {json.dumps(value)}: supported values: {allowed}")
    if kind == "anyOf" and all(set(alt) == {"type"} for alt in arg):  # x-kubernetes-int-or-string
        kind, arg = "type", ",".join(alt["type"] for alt in arg)
    detail = {
        "pattern": lambda: f"{path} in body should match '{str(arg).replace(chr(92), chr(92) * 2)}'",
        "minimum": lambda: f"{path} in body should be greater than or equal to {arg}",
        "maximum": lambda: f"{path} in body should be less than or equal to {arg}",
        "minLength": lambda: f"{path} in body should be at least {arg} chars long",
        "maxLength": lambda: f"{path} in body should be at most {arg} chars long",
        "minItems": lambda: f"{path} in body should have at least {arg} items",
        "maxItems": lambda: f"{path} in body should have at most {arg} items",
        "maxProperties": lambda: f"{path} in body should have at most {arg} properties",
        "type": lambda: f"{path} in body must be of type {arg}: "
                        f"{json.dumps(_GO_TYPES.get(type(value).__name__, type(value).__name__))}",
    }.get(str(kind), lambda: f"{path or '<root>'}: {error.message}")()
    return field_cause(path, "FieldValueInvalid", detail, value)


def validate(obj: dict[str, Any], schema: Schema) -> list[FieldCause]:
    """Causes in kube-apiserver's words (empty when valid); metadata is not checked against the schema."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    validator = jsonschema.Draft7Validator(to_jsonschema(schema))
    return sorted((_cause(e) for e in validator.iter_errors(body)), key=lambda c: (c.field, c.message))


def admit(obj: dict[str, Any], schema: Schema) -> tuple[dict[str, Any], list[FieldCause]]:
    """Prune, default and validate: the object to store and the validation causes."""
    pruned = prune(obj, schema)
    defaulted = apply_defaults(pruned, schema)
    return defaulted, validate(defaulted, schema)
