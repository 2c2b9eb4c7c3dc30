"""Pure patch algebra for the Kubernetes API emulator: JSON merge patch, JSON patch, strategic merge.

Kept free of I/O so the semantics that clients (kopf, kubectl, the official client) rely on can be
unit-tested on their own. Errors raise :class:`PatchError` which the server maps to a Status response.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

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
def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch by the ``jsonpatch`` library (kopf's own dependency), with kube's status codes:
    a malformed patch is 400, a failed ``test`` or a missing path 422. ``target`` is not mutated."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations", 400)
    try:
        return jsonpatch.JsonPatch(ops).apply(target)
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"testing value failed: {e}") from None
    except jsonpatch.InvalidJsonPatch as e:
        raise PatchError(f"malformed JSON patch: {e}", 400) from None
    except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
            TypeError, KeyError, IndexError) as e:
        raise PatchError(f"the JSON patch does not apply: {e}") from None


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
