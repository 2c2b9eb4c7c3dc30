"""Pure patch algebra for the Kubernetes API emulator: JSON merge patch, JSON patch, strategic merge.

Kept free of I/O so the semantics that clients (kopf, kubectl, the official client) rely on can be
unit-tested on their own. Errors raise :class:`PatchError` which the server maps to a Status response.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# Strategic merge keys of the list fields that routectl's peers actually touch (from the Go struct tags
# of k8s.io/api core/v1 and apimachinery meta/v1). Paths are dotted, list items are not part of the path.
# A value of None means "primitive list, merged as a set" (patchStrategy=merge without a merge key).
STRATEGIC_LIST_KEYS: dict[str, str | None] = {
    "metadata.finalizers": None,
    "metadata.ownerReferences": "uid",
    "spec.podCIDRs": None,
    "status.conditions": "type",
    "status.addresses": "type",
    "spec.containers": "name",
    "spec.initContainers": "name",
    "spec.volumes": "name",
}


class PatchError(Exception):
    """A patch that cannot be applied; ``status`` is the HTTP code kube-apiserver answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------- merge
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ----------------------------------------------------------------------------------------- json patch
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}", 400)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path {path!r} does not exist: missing key {part!r}")
            doc = doc[part]
        elif isinstance(doc, list):
            doc = doc[_index(doc, part, path, allow_end=False)]
        else:
            raise PatchError(f"path {path!r} traverses a non-container value")
    return doc


def _index(seq: list[Any], part: str, path: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(seq)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise PatchError(f"invalid array index {part!r} in {path!r}")
    idx = int(part)
    limit = len(seq) if allow_end else len(seq) - 1
    if idx > limit:
        raise PatchError(f"array index {idx} out of range in {path!r}")
    return idx


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"cannot add into a non-container at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove missing key at {path!r}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, allow_end=False))
    raise PatchError(f"cannot remove from a non-container at {path!r}")


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add/remove/replace/move/copy/test). A failed ``test`` raises 422, like kube."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations", 400)
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"malformed JSON patch operation: {op!r}", 400)
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"JSON patch operation {kind!r} needs a value: {op!r}", 400)
        if kind == "add":
            doc = _add(doc, path, op["value"])
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, op["value"])
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError(f"JSON patch operation {kind!r} needs 'from': {op!r}", 400)
            if kind == "move":
                doc, value = _remove(doc, op["from"])
            else:
                value = copy.deepcopy(_walk(doc, _pointer(op["from"]), op["from"]))
            doc = _add(doc, path, value)
        elif kind == "test":
            actual = _walk(doc, _pointer(path), path)
            if actual != op["value"]:
                raise PatchError(
                    f"testing value {path} failed: expected {op['value']!r}, found {actual!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}", 400)
    return doc


# ------------------------------------------------------------------------------------ strategic merge
def strategic_merge_patch(target: Any, patch: Any, path: str = "") -> Any:
    """Strategic merge patch for the list fields in :data:`STRATEGIC_LIST_KEYS`; other lists are replaced.

    Supports the directives kubectl and client-go send: ``$patch: replace|delete`` on maps and keyed list
    items, ``$deleteFromPrimitiveList/<field>``, and ignores ``$setElementOrder/<field>`` / ``$retainKeys``.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive is not None:
        raise PatchError(f"unknown $patch directive {directive!r} at {path or '/'}", 400)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        child = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and child in STRATEGIC_LIST_KEYS:
            result[key] = _merge_list(result.get(key), value, STRATEGIC_LIST_KEYS[child], child)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current: Any, patch: list[Any], key: str | None, path: str) -> list[Any]:
    base = list(current) if isinstance(current, list) else []
    if key is None:  # primitive set-like list: union, keeping the existing order first
        merged = copy.deepcopy(base)
        for item in patch:
            if item not in merged:
                merged.append(copy.deepcopy(item))
        return merged
    merged = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"strategic merge: every item of {path} needs the merge key {key!r}")
        positions = [i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == item[key]]
        if item.get("$patch") == "delete":
            merged = [old for i, old in enumerate(merged) if i not in positions]
        elif item.get("$patch") == "replace":
            clean = {k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"}
            if positions:
                merged[positions[0]] = clean
            else:
                merged.append(clean)
        elif positions:
            merged[positions[0]] = strategic_merge_patch(merged[positions[0]], item, path)
        else:
            merged.append(strategic_merge_patch({}, item, path))
    return merged


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Dispatch on the PATCH Content-Type; unknown or server-side-apply types answer 415."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == MERGE:
        if not isinstance(patch, dict):
            raise PatchError("a merge patch must be a JSON object", 400)
        result = merge_patch(target, patch)
    elif media == JSON:
        result = json_patch(target, patch)
    elif media == STRATEGIC:
        if not isinstance(patch, dict):
            raise PatchError("a strategic merge patch must be a JSON object", 400)
        result = strategic_merge_patch(target, patch)
    elif media == APPLY:
        raise PatchError("server-side apply (application/apply-patch+yaml) is not emulated", 415)
    else:
        raise PatchError(f"the patch content type {media!r} is not supported", 415)
    if not isinstance(result, dict):
        raise PatchError("the patched object is not a JSON object")
    return result
