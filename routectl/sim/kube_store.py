"""In-memory object store with kube-apiserver's write semantics, behind the HTTP emulator in kube.py.

What it adds over a plain dict store: a global resourceVersion counter, uid,
generation (bumped on non-metadata/non-status changes), creationTimestamp, optimistic concurrency (409),
AlreadyExists, the status subresource split, finalizers + deletionTimestamp, namespace lifecycle, CRDs
that register servable resources, and a bounded event history so watches can resume from a
resourceVersion (410 Gone when it is too old). Single-threaded by design: it is only called on the
emulator's event loop; listeners are called synchronously on every change.
"""

from __future__ import annotations

import collections
import copy
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from routectl.sim import kube_cel, kube_patch, kube_schema, kube_validate
from routectl.sim.kube_types import (
    BUILTIN_TYPES,
    ApiError,
    Change,
    Obj,
    ObjKey,
    ResKey,
    ResourceType,
    bad_request,
    conflict,
    invalid,
    meta_of,
    not_found,
    now_iso,
    without,
)
from routectl.sim.kube_watchgate import WatchGate

__all__ = ["ApiError", "Change", "Obj", "ResourceType", "Store", "bad_request", "conflict", "invalid",
           "not_found", "now_iso"]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Store:
    """All objects, the resource registry, the resourceVersion clock, the change history and listeners."""

    def __init__(self, history_size: int = 10_000) -> None:
        self.types: dict[ResKey, ResourceType] = {}
        self.objects: dict[ResKey, dict[ObjKey, Obj]] = collections.defaultdict(dict)
        self.rv = 0
        self.history: collections.deque[Change] = collections.deque()
        self.history_size = history_size
        self.history_floor = 0  # watches from an rv below this are answered 410 Gone
        self.listeners: set[Callable[[Change], None]] = set()
        self.gate = WatchGate(self._deliver)  # holds back / delays watch events on request
        for rt in BUILTIN_TYPES:
            self.types[rt.key] = rt
        for ns in SYSTEM_NAMESPACES:
            self.create(self.types[("", "namespaces")], None, {"metadata": {"name": ns}})

    # ------------------------------------------------------------------------------------- lookup
    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        """The resource served at /<group>/<version>/<plural>, or 404."""
        rt = self.types.get((group, plural))
        if rt is None or version not in rt.versions:
            where = f"{group}/{version}" if group else version
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                           f"({plural} in {where})")
        return rt

    def find_type(self, api_version: str, kind_or_plural: str) -> ResourceType:
        """Resolve by apiVersion and kind, plural, singular or short name (case-insensitive)."""
        group, _, version = api_version.rpartition("/")
        wanted = kind_or_plural.lower()
        for rt in self.types.values():
            if rt.group == group and version in rt.versions and wanted in (
                    rt.plural, rt.kind.lower(), rt.singular, *rt.short_names):
                return rt
        raise ApiError(404, "NotFound", f"no resource {kind_or_plural!r} in {api_version!r}")

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """The stored object (not a copy: callers must not mutate it)."""
        obj = self.objects[rt.key].get((namespace if rt.namespaced else None, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def list(self, rt: ResourceType, namespace: str | None,
             predicate: Callable[[Obj], bool] = lambda _o: True) -> list[Obj]:
        """Objects of a type (in one namespace, or all when None), sorted by namespace and name."""
        items = [obj for (ns, _), obj in sorted(self.objects[rt.key].items(), key=lambda kv: (kv[0][0] or "",
                                                                                               kv[0][1]))
                 if (namespace is None or ns == namespace) and predicate(obj)]
        return items

    # --------------------------------------------------------------------------------------- writes
    def create(self, rt: ResourceType, namespace: str | None, body: Any, field_validation: str = "") -> Obj:
        """POST: validate, stamp metadata, store, emit ADDED. 409 AlreadyExists for a taken name."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        self._check_type_fields(rt, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(rt, "", ["metadata.name: Required value: name or generateName is required"])
        kube_validate.validate_name(rt, name)
        namespace = self._scope(rt, namespace, meta)
        if rt.namespaced:
            nsobj = self.objects[("", "namespaces")].get((None, namespace or ""))
            if nsobj is None:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
            if meta_of(nsobj).get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f'{rt.plural} "{name}" is forbidden: unable to create new '
                               f"content in namespace {namespace} because it is being terminated")
        if (namespace, name) in self.objects[rt.key]:
            raise ApiError(409, "AlreadyExists", f'{rt.plural}{rt.dotted_group} "{name}" already exists',
                           {"name": name, "group": rt.group, "kind": rt.plural})
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(k, None)
        if rt.status_subresource and not rt.keep_status_on_create:
            obj.pop("status", None)
        obj = self._validate(rt, obj, None, field_validation)
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        self._prepare_create(rt, obj)
        return self._commit(rt, None, obj, "ADDED")

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: Any,
               subresource: str | None = None, field_validation: str = "") -> Obj:
        """PUT: replace with an optional resourceVersion precondition (409 when stale)."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        old = self.get(rt, namespace, name)
        body_name = meta_of(body).get("name")
        if body_name and body_name != name:
            raise bad_request(f"the name of the object ({body_name}) does not match the name on the URL "
                              f"({name})")
        self._check_type_fields(rt, body)
        if rt.crd_name and not meta_of(body).get("resourceVersion"):  # CRs allow no unconditional update
            raise invalid(rt, name, ["metadata.resourceVersion: Invalid value: 0x0: must be specified for an "
                                     "update"])
        new = copy.deepcopy(body)
        return self._write(rt, old, new, subresource, field_validation)

    def patch(self, rt: ResourceType, namespace: str | None, name: str, content_type: str, patch: Any,
              subresource: str | None = None, field_validation: str = "") -> Obj:
        """PATCH with merge / JSON / strategic merge semantics (see kube_patch)."""
        old = self.get(rt, namespace, name)
        if rt.crd_name and content_type.split(";")[0].strip().lower() == kube_patch.STRATEGIC:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, "
                           "application/merge-patch+json, application/apply-patch+yaml")
        try:
            new = kube_patch.apply_patch(content_type, old, patch)
        except kube_patch.PatchError as e:
            reason = {400: "BadRequest", 415: "UnsupportedMediaType"}.get(e.status, "Invalid")
            raise ApiError(e.status, reason, str(e)) from None
        if meta_of(new).get("name") != name:
            raise bad_request("metadata.name cannot be changed by a patch")
        return self._write(rt, old, new, subresource, field_validation)

    def delete(self, rt: ResourceType, namespace: str | None, name: str, options: Any = None) -> Obj:
        """DELETE: with finalizers, set deletionTimestamp and keep the object; else remove it now."""
        old = self.get(rt, namespace, name)
        pre = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
        if pre.get("uid") and pre["uid"] != meta_of(old).get("uid"):
            raise conflict(rt, name)
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta_of(old).get("resourceVersion"):
            raise conflict(rt, name)
        if rt.key == ("", "namespaces"):
            return self._delete_namespace(rt, old)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unregister_crd(old)
        if meta_of(old).get("finalizers"):
            if meta_of(old).get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["generation"] = int(meta_of(old).get("generation") or 0) + 1
            return self._commit(rt, old, new, "MODIFIED")
        return self._remove(rt, old)

    # ------------------------------------------------------------------------------------ internals
    def _write(self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None,
               field_validation: str = "") -> Obj:
        name = meta_of(old)["name"]
        if subresource not in (None, "status") or (subresource == "status" and not rt.status_subresource):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                           f"({rt.plural}/{subresource})")
        if not isinstance(new.get("metadata"), dict):
            raise bad_request("metadata must be an object")
        stated_rv = new["metadata"].get("resourceVersion")
        if stated_rv and stated_rv != meta_of(old).get("resourceVersion"):
            raise conflict(rt, name)
        if subresource == "status":  # only .status changes through /status
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        else:
            if rt.status_subresource:  # the main resource ignores .status
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation", "namespace", "name"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            if meta_of(old).get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(meta_of(old).get("finalizers") or [])
                if added:
                    raise invalid(rt, name, ["metadata.finalizers: Forbidden: no new finalizers can be "
                                             f"added if the object is being deleted, found new finalizers "
                                             f"{sorted(added)}"])
        new.setdefault("apiVersion", old.get("apiVersion"))
        new.setdefault("kind", old.get("kind"))
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        new = self._validate(rt, new, old, field_validation)
        if rt.key == ("", "nodes"):
            kube_validate.normalise_node(new)
        if new == old:  # a no-op write: no new resourceVersion, no event (as upstream)
            return old
        if without(new, "metadata", "status") != without(old, "metadata", "status"):
            new["metadata"]["generation"] = int(meta_of(old).get("generation") or 0) + 1
        if meta_of(new).get("deletionTimestamp") and not meta_of(new).get("finalizers"):
            # The last finalizer is gone: upstream deletes during the update, so watchers see only DELETED.
            return self._remove(rt, new)
        return self._commit(rt, old, new, "MODIFIED")

    def _commit(self, rt: ResourceType, old: Obj | None, new: Obj, kind: str) -> Obj:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        meta = new["metadata"]
        self.objects[rt.key][(meta.get("namespace"), meta["name"])] = new
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(new)
        self._emit(Change(self.rv, rt.key, kind, new, old))
        return new

    def _remove(self, rt: ResourceType, old: Obj) -> Obj:
        meta = meta_of(old)
        self.objects[rt.key].pop((meta.get("namespace"), meta["name"]), None)
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(Change(self.rv, rt.key, "DELETED", gone, old))
        if rt.namespaced and meta.get("namespace"):
            self._maybe_finish_namespace(meta["namespace"])
        return gone

    def _emit(self, change: Change) -> None:
        if len(self.history) >= self.history_size:
            self.history_floor = self.history.popleft().rv
        self.history.append(change)
        if self.gate.active and self.gate.intercept(change):
            return
        self._deliver(change)

    def _deliver(self, change: Change) -> None:
        for listener in list(self.listeners):
            listener(change)

    def _check_type_fields(self, rt: ResourceType, obj: Obj) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version is not None and (api_version.rpartition("/")[0] != rt.group
                                        or api_version.rpartition("/")[2] not in rt.versions):
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({rt.api_version()})")
        if kind is not None and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj.setdefault("apiVersion", rt.api_version())
        obj.setdefault("kind", rt.kind)


    def _scope(self, rt: ResourceType, namespace: str | None, meta: Obj) -> str | None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return None
        body_ns = meta.get("namespace")
        if namespace is None:
            namespace = body_ns
        elif body_ns and body_ns != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on "
                              "the request")
        if not namespace:
            raise bad_request("a namespaced object needs a namespace (in the URL or metadata.namespace)")
        meta["namespace"] = namespace
        return namespace

    def _prepare_create(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == ("", "namespaces"):
            obj["status"] = {"phase": "Active"}
        elif rt.key == ("", "nodes"):
            kube_validate.normalise_node(obj)
        elif rt.key == ("", "pods"):
            obj["status"] = {"phase": "Pending"}
        elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            names = obj["spec"]["names"]
            obj["status"] = {
                "acceptedNames": copy.deepcopy(names),
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now_iso()}
                    for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                    ("Established", "InitialNamesAccepted", "the initial names have been "
                                     "accepted"))],
            }

    # ------------------------------------------------------------------------------- validation
    def _validate(self, rt: ResourceType, new: Obj, old: Obj | None, field_validation: str = "") -> Obj:
        """Validate (422 on failure); custom resources are also pruned and defaulted. Returns the result.

        ``field_validation="Strict"`` (what kubectl sends) turns unknown custom-resource fields into a 400
        instead of pruning them silently, as upstream's server-side field validation does.
        """
        name = meta_of(new).get("name", "")
        kube_validate.validate_meta(rt, name, new)
        if rt.key == ("", "nodes"):
            kube_validate.validate_node(rt, name, new, old)
        elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            kube_validate.validate_crd(rt, name, new, old, self.types)
        elif rt.key == ("", "events"):
            kube_validate.validate_event(rt, name, new)
        elif rt.schemas:
            version = str(new.get("apiVersion", "")).rpartition("/")[2] or rt.storage_version
            schema = rt.schemas.get(version) or rt.schemas.get(rt.storage_version)
            if schema:
                unknown = kube_schema.unknown_fields(new, schema)
                if unknown and field_validation == "Strict":
                    raise bad_request("strict decoding error: " + ", ".join(
                        f'unknown field "{f}"' for f in unknown))
                new, causes = kube_schema.admit(new, schema)
                rules = rt.rules.get(version, rt.rules.get(rt.storage_version))
                cel_causes = kube_cel.validate(rules, new, kube_cel.MISSING if old is None else old)
                if causes or cel_causes:
                    raise invalid(rt, name, [*causes, *cel_causes])
        return new

    # ---------------------------------------------------------------------------------------- CRDs
    def _register_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        names = spec["names"]
        versions = [v for v in spec["versions"] if v.get("served", True)]
        versions.sort(key=lambda v: not v.get("storage"))  # storage version first
        if not versions:
            self.types.pop((spec["group"], names["plural"]), None)
            return
        self.types[(spec["group"], names["plural"])] = ResourceType(
            group=spec["group"], versions=tuple(v["name"] for v in versions), plural=names["plural"],
            kind=names["kind"], singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec["scope"] == "Namespaced",
            status_subresource=any("status" in (v.get("subresources") or {}) for v in versions),
            short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
            schemas={v["name"]: v["schema"]["openAPIV3Schema"] for v in versions
                     if (v.get("schema") or {}).get("openAPIV3Schema")},
            printer_columns={v["name"]: list(v.get("additionalPrinterColumns") or []) for v in versions},
            rules={v["name"]: kube_cel.compile_schema(v["schema"]["openAPIV3Schema"]) for v in versions
                   if (v.get("schema") or {}).get("openAPIV3Schema")},
            crd_name=meta_of(crd)["name"])

    def _unregister_crd(self, crd: Obj) -> None:
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        rt = self.types.pop(key, None)
        if rt is not None:  # upstream deletes every custom resource of the CRD first
            for obj in list(self.objects[key].values()):
                self._remove(rt, obj)

    # ---------------------------------------------------------------------------------- namespaces
    def _delete_namespace(self, rt: ResourceType, old: Obj) -> Obj:
        name = meta_of(old)["name"]
        if not meta_of(old).get("deletionTimestamp"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["status"] = {"phase": "Terminating"}
            old = self._commit(rt, old, new, "MODIFIED")
        for other in list(self.types.values()):
            if other.namespaced:
                for obj in [o for (ns, _), o in list(self.objects[other.key].items()) if ns == name]:
                    self.delete(other, name, meta_of(obj)["name"])
        return self._maybe_finish_namespace(name) or old

    def _maybe_finish_namespace(self, namespace: str) -> Obj | None:
        rt = self.types[("", "namespaces")]
        nsobj = self.objects[rt.key].get((None, namespace))
        if nsobj is None or not meta_of(nsobj).get("deletionTimestamp"):
            return None
        for t in self.types.values():
            if t.namespaced and any(ns == namespace for (ns, _) in self.objects[t.key]):
                return None
        return self._remove(rt, nsobj)

    def changes_since(self, rv: int, key: ResKey) -> Iterable[Change]:
        """History entries of one resource after ``rv`` (caller checks ``history_floor`` first), without
        the changes the watch gate still holds back (they reach the new watch when released)."""
        held = self.gate.held_rvs if self.gate.active else ()
        return [c for c in self.history if c.rv > rv and c.key == key and c.rv not in held]
