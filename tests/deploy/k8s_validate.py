"""Strict structural validation of Kubernetes objects against the `kubernetes` client's models.

The client's own deserialiser silently drops unknown fields, so a typo such as `readOnlyRootFileSystem`
would pass it; `validate` walks the object against each model's attribute map and types (unknown field,
wrong type = error) and then deserialises it, which enforces the models' required fields.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client
from kubernetes.client import models

# The generated models spell containers as "List[V1Container]" / "Dict[str, str]" (older: "list[...]").
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:[Dd]ict\(([^,]+), (.+)\)|Dict\[([^,]+), (.+)\])$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
}


def model_name(api_version: str, kind: str) -> str:
    """Client model class name for an apiVersion/kind, e.g. apps/v1 Deployment -> V1Deployment."""
    version = api_version.rsplit("/", 1)[-1]
    return version[:1].upper() + version[1:] + kind


def _walk(value: Any, type_str: str, path: str, errors: list[str]) -> None:
    if type_str == "object":
        return
    if (m := _LIST.match(type_str)) is not None:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _walk(item, m.group(1), f"{path}[{i}]", errors)
        return
    if (m := _DICT.match(type_str)) is not None:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        inner = m.group(2) or m.group(4)
        for key, item in value.items():
            _walk(item, inner, f"{path}.{key}", errors)
        return
    if type_str in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_str])
        if type_str in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            errors.append(f"{path}: expected {type_str}, got {type(value).__name__} {value!r}")
        return
    cls = getattr(models, type_str, None)
    if cls is None:
        errors.append(f"{path}: no client model {type_str}")
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({type_str}), got {type(value).__name__}")
        return
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field for {type_str}")
            continue
        if item is None:
            continue
        _walk(item, cls.openapi_types[attr], f"{path}.{key}", errors)


def validate(obj: dict[str, Any]) -> list[str]:
    """Problems found in `obj` (empty when it is a well-formed object of a kind the client knows)."""
    errors: list[str] = []
    for required in ("apiVersion", "kind"):
        if not obj.get(required):
            errors.append(f"missing {required}")
    if not (obj.get("metadata") or {}).get("name"):
        errors.append("missing metadata.name")
    if errors:
        return errors
    name = model_name(obj["apiVersion"], obj["kind"])
    if getattr(models, name, None) is None:
        return [f"{obj['apiVersion']} {obj['kind']}: unknown to the kubernetes client"]
    label = f"{obj['kind']}/{obj['metadata']['name']}"
    _walk(obj, name, label, errors)
    if not errors:
        try:
            client.ApiClient()._ApiClient__deserialize(obj, name)  # type: ignore[attr-defined]
        except (ValueError, TypeError) as exc:
            errors.append(f"{label}: {exc}")
    return errors
