"""The vocabulary of the Kubernetes API emulator: Status errors as kube-apiserver words them, the servable
resource types (built-in and CRD-declared), and the committed changes watches are fed."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from routectl.sim import kube_cel
from routectl.sim.kube_cel import FieldCause

Obj = dict[str, Any]
ResKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str | None, str]  # (namespace, name)



class ApiError(Exception):
    """An error answered as a ``kind: Status`` body with the HTTP code and reason kube-apiserver uses."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def status(self) -> Obj:
        """The ``Status`` object for the response body."""
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body



def not_found(rt: ResourceType, name: str) -> ApiError:
    """404 NotFound for a named object, worded like kube-apiserver."""
    return ApiError(404, "NotFound", f'{rt.plural}{rt.dotted_group} "{name}" not found',
                    {"name": name, "group": rt.group, "kind": rt.plural})


def conflict(rt: ResourceType, name: str) -> ApiError:
    """409 Conflict for a stale resourceVersion or a failed precondition."""
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {rt.plural}{rt.dotted_group} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def invalid(rt: ResourceType, name: str, causes: list[str] | list[FieldCause]) -> ApiError:
    """422 Invalid with one cause per problem, worded as apimachinery's NewInvalid (one error, or a
    bracketed list); :class:`FieldCause` causes keep their field and reason in ``details.causes``."""
    texts = [str(c) for c in causes]
    summary = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    details = [{"reason": c.reason, "message": c.message, "field": c.field} if isinstance(c, FieldCause)
               else {"reason": "FieldValueInvalid", "message": c} for c in causes]
    return ApiError(422, "Invalid", f'{rt.kind}{rt.dotted_group} "{name}" is invalid: {summary}',
                    {"name": name, "group": rt.group, "kind": rt.kind, "causes": details})


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


@dataclass
class ResourceType:
    """One servable resource (a row of discovery): where it lives, its scope, and its subresources."""

    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    singular: str
    namespaced: bool
    status_subresource: bool = False
    keep_status_on_create: bool = False  # Nodes keep status on create; CRs and pods do not.
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    schemas: dict[str, Obj] = field(default_factory=dict)  # version -> openAPIV3Schema (CRs only)
    printer_columns: dict[str, list[Obj]] = field(default_factory=dict)  # version -> additionalPrinterColumns
    rules: dict[str, kube_cel.Node | None] = field(default_factory=dict)  # version -> compiled CEL rules
    crd_name: str | None = None

    @property
    def key(self) -> ResKey:
        """(group, plural): how the store indexes this resource."""
        return (self.group, self.plural)

    @property
    def dotted_group(self) -> str:
        """``.group`` for error messages (empty for the core group)."""
        return f".{self.group}" if self.group else ""

    @property
    def storage_version(self) -> str:
        """The version objects are stored at (the first one)."""
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        """``group/version`` (or just ``v1`` for the core group)."""
        v = version or self.storage_version
        return f"{self.group}/{v}" if self.group else v

    def verbs(self) -> list[str]:
        """Verbs listed in discovery: everything is served for every resource."""
        return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _builtin(group: str, plural: str, kind: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType(group=group, versions=("v1",), plural=plural, kind=kind, singular=kind.lower(),
                        namespaced=namespaced, **kw)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("", "namespaces", "Namespace", False, status_subresource=True, short_names=("ns",)),
    _builtin("", "nodes", "Node", False, status_subresource=True, keep_status_on_create=True,
             short_names=("no",)),
    _builtin("", "pods", "Pod", True, status_subresource=True, short_names=("po",), categories=("all",)),
    _builtin("", "events", "Event", True, short_names=("ev",)),
    _builtin("", "configmaps", "ConfigMap", True, short_names=("cm",)),
    _builtin("coordination.k8s.io", "leases", "Lease", True),
    _builtin("events.k8s.io", "events", "Event", True, short_names=("ev",)),
    _builtin("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition", False,
             status_subresource=True, short_names=("crd", "crds"), categories=("api-extensions",)),
)


@dataclass
class Change:
    """One committed change, as kept in the history and fed to watchers."""

    rv: int
    key: ResKey
    type: str  # ADDED / MODIFIED / DELETED
    obj: Obj
    old: Obj | None


def now_iso() -> str:
    """An RFC 3339 timestamp in UTC with second precision, as kube serialises metav1.Time."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta_of(obj: Obj) -> Obj:
    """``obj.metadata`` when it is an object, else an empty dict (never None)."""
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def without(obj: Obj, *keys: str) -> Obj:
    """A shallow copy of ``obj`` without ``keys``."""
    return {k: v for k, v in obj.items() if k not in keys}

