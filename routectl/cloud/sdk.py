"""Import the few pieces of google-cloud-compute the GCE driver uses, not the whole package.

`google.cloud.compute_v1/__init__.py` imports the clients of all 130-odd Compute services (about 40 MB
of a controller's resident memory, and a second of start-up) although the driver talks to five. The
package marks those imports lazy itself (`__lazy_modules__`, PEP 810, honoured from Python 3.15 on);
`lean_package()` gives older Pythons the same effect: the package module exists and its submodules
import normally, and its `__init__` runs only when a name that only `__init__` defines is read
(`compute_v1.RoutesClient`), so code that uses the package the usual way still gets all of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

COMPUTE = "google.cloud.compute_v1"
# The Compute services the GCE driver calls (routectl.cloud.gce).
COMPUTE_SERVICES = ("routes", "global_operations", "instances", "projects", "networks")

# Every lazy import of a cloud SDK in this process holds this lock. Two threads importing parts of one
# package (the start-up warm-up, and a route sync making its first client) could each hold a module
# lock the other needed: Python broke the cycle with a deadlock error in one thread and left
# `google.cloud.cloudquotas_v1.services.cloud_quotas` partially initialized for good, so every later
# route sync failed (1 start-up in 3 at 5,000 nodes). One import at a time cannot form a cycle.
_lock = threading.RLock()


def sdk_imports() -> threading.RLock:
    """The lock to hold around any lazy import of a cloud SDK (`with sdk_imports(): ...`; re-entrant)."""
    return _lock


def import_sdk_module(name: str) -> ModuleType:
    """`importlib.import_module(name)` under the SDK import lock."""
    with _lock:
        return importlib.import_module(name)


def lean_package(name: str) -> ModuleType:
    """Package `name` in sys.modules without running its `__init__` yet (module docstring).

    Already imported: returned as it is. Reading a submodule's name imports that submodule; reading any
    other name runs the real `__init__` into the same module object first (thread-safe, once).
    """
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise ImportError(f"{name} is not an importable package", name=name)
        module = importlib.util.module_from_spec(spec)
        loader = spec.loader

        def __getattr__(attr: str) -> object:
            if attr.startswith("__") and attr not in ("__all__", "__version__"):
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            sub = f"{name}.{attr}"
            if sub in sys.modules or importlib.util.find_spec(sub) is not None:
                return importlib.import_module(sub)  # what `from name import attr` of a submodule does
            with _lock:
                if module.__dict__.pop("__getattr__", None) is not None:
                    loader.exec_module(module)  # the real __init__, once
            try:
                return module.__dict__[attr]
            except KeyError:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:  # as an import would: the package is an attribute of its parent
            setattr(importlib.import_module(parent), child, module)
        return module


def compute_types() -> ModuleType:
    """`google.cloud.compute_v1.types.compute`: the request and resource messages (Route, Operation...)."""
    with _lock:
        lean_package(COMPUTE)
        return importlib.import_module(f"{COMPUTE}.types.compute")


def compute_service(service: str) -> ModuleType:
    """One Compute service package (`routes`, `instances`...): its client class and `transports.rest`."""
    with _lock:
        lean_package(COMPUTE)
        return importlib.import_module(f"{COMPUTE}.services.{service}")


def warm_gce() -> None:
    """Import everything the GCE driver will use (at start, in a thread, while the Lease is won)."""
    with _lock:
        compute_types()
        for service in COMPUTE_SERVICES:
            importlib.import_module(f"{compute_service(service).__name__}.transports.rest")
        importlib.import_module("google.cloud.cloudquotas_v1.services.cloud_quotas.transports.rest")
