"""A small pure-Python kustomize for the subset deploy/ uses, so manifests render without kubectl.

Supported: `resources` (files and kustomization directories), `patches` (strategic-merge patches by
path or inline, identified by the patch's own kind/name), `images`, `labels` (pairs, includeSelectors,
includeTemplates). Anything else raises KustomizeLiteError naming the key, so deploy/ cannot silently
start relying on a feature this renderer would get wrong. When kubectl is installed the tests check that
both renderers produce the same objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches", "images", "labels"}
# Strategic-merge keys of the lists deploy/ patches (from the Kubernetes API's patchMergeKey tags).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
# Kinds whose pod template gets labels with includeTemplates (kustomize's fieldspecs).
TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "ReplicationController"}


class KustomizeLiteError(ValueError):
    """The kustomization uses something this renderer does not implement, or is malformed."""


def _load_docs(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeLiteError(f"{path}: every YAML document must be a mapping")
    return docs


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeLiteError(f"{directory}: no kustomization.yaml")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def render(directory: str | Path) -> list[Obj]:
    """Render the kustomization in `directory` into a list of objects (in resource order)."""
    root = Path(directory)
    kfile = _kustomization_file(root)
    with kfile.open(encoding="utf-8") as fh:
        spec = yaml.safe_load(fh) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeLiteError(f"{kfile}: unsupported kustomization keys {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources") or []:
        target = root / entry
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            if not _inside(target, root):
                # kustomize's default load restrictor refuses this too.
                raise KustomizeLiteError(f"{kfile}: file {entry} is outside the kustomization root")
            objects.extend(_load_docs(target))
        else:
            raise KustomizeLiteError(f"{kfile}: resource {entry} does not exist")
    for patch_entry in spec.get("patches") or []:
        for patch in _patch_docs(root, kfile, patch_entry):
            _apply_patch(objects, patch, kfile)
    for label_entry in spec.get("labels") or []:
        _apply_labels(objects, label_entry, kfile)
    for image in spec.get("images") or []:
        _apply_image(objects, image, kfile)
    return objects


def _patch_docs(root: Path, kfile: Path, entry: Obj) -> list[Obj]:
    extra = set(entry) - {"path", "patch"}
    if extra:
        raise KustomizeLiteError(f"{kfile}: unsupported patch fields {sorted(extra)} (only path/patch)")
    if "path" in entry:
        return _load_docs(root / entry["path"])
    if "patch" in entry:
        return [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
    raise KustomizeLiteError(f"{kfile}: a patch needs path or patch")


def _key(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj.get("kind", ""), meta.get("name", ""), meta.get("namespace") or "")


def _apply_patch(objects: list[Obj], patch: Obj, kfile: Path) -> None:
    kind, name, namespace = _key(patch)
    matches = [i for i, obj in enumerate(objects)
               if _key(obj)[:2] == (kind, name) and (not namespace or _key(obj)[2] == namespace)]
    if len(matches) != 1:
        raise KustomizeLiteError(f"{kfile}: patch for {kind}/{name} matches {len(matches)} objects")
    index = matches[0]
    objects[index] = strategic_merge(objects[index], patch)


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge as kustomize does it, for maps and the merge-keyed lists in MERGE_KEYS.

    A list with a merge key becomes: the patch's items in patch order (each merged into the base item
    with the same key), then the base items the patch does not mention, in base order. Other lists
    are replaced; a null in the patch deletes the key.
    """
    if isinstance(patch, dict) and isinstance(base, dict):
        if any(str(k).startswith("$") for k in patch):
            raise KustomizeLiteError(f"strategic-merge directives are not supported ({field})")
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        merge_key = MERGE_KEYS[field]
        by_key = {item.get(merge_key): item for item in base if isinstance(item, dict)}
        merged: list[Any] = []
        seen = set()
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                raise KustomizeLiteError(f"{field}: patch list items need {merge_key!r}")
            key = item[merge_key]
            seen.add(key)
            merged.append(strategic_merge(by_key[key], item, field) if key in by_key else copy.deepcopy(item))
        merged.extend(copy.deepcopy(item) for item in base
                      if not (isinstance(item, dict) and item.get(merge_key) in seen))
        return merged
    return copy.deepcopy(patch)


def _apply_labels(objects: list[Obj], entry: Obj, kfile: Path) -> None:
    extra = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
    if extra:
        raise KustomizeLiteError(f"{kfile}: unsupported labels fields {sorted(extra)}")
    if entry.get("includeSelectors"):
        raise KustomizeLiteError(f"{kfile}: labels.includeSelectors is not supported "
                                 "(selectors are immutable)")
    pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if entry.get("includeTemplates") and obj.get("kind") in TEMPLATE_KINDS:
            template = obj.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _containers(obj: Obj) -> list[Obj]:
    pod = (obj.get("spec") or {}).get("template", {}).get("spec") or {}
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def _apply_image(objects: list[Obj], image: Obj, kfile: Path) -> None:
    extra = set(image) - {"name", "newName", "newTag", "digest"}
    if extra or "name" not in image:
        raise KustomizeLiteError(f"{kfile}: unsupported image entry {image}")
    for obj in objects:
        for container in _containers(obj):
            current = str(container.get("image", ""))
            name, tag = _split_image(current)
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{new_name}:{image['newTag']}"
            else:
                container["image"] = new_name + tag


def _split_image(ref: str) -> tuple[str, str]:
    """("name", ":tag" or "@digest" or "") of an image reference."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, "@" + digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon:]
    return ref, ""
