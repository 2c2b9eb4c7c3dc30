"""Build a route driver from flat settings (CLI flags / env), so callers need not know driver classes."""

from __future__ import annotations

import inspect
from typing import Any

from routectl.cloud.base import RouteDriver
from routectl.cloud.sdk import sdk_imports

PROVIDERS = ("gce", "aws")
# Settings every caller may pass whatever the provider; ignored by drivers that do not use them.
_COMMON = {"cluster_cidrs", "cluster_name", "cluster_id"}


def make_driver(provider: str, **settings: Any) -> RouteDriver:
    """`make_driver("gce", project=..., network=..., cluster_name=..., endpoint=...)` or
    `make_driver("aws", cluster_id=..., region=..., cluster_cidrs=[...], endpoint_url=...)`.

    None values are dropped (unset flags); `cluster_name`/`cluster_id` are accepted for both clouds.
    Unknown settings or missing required ones raise ValueError naming them.
    """
    settings = {k: v for k, v in settings.items() if v is not None}
    if provider == "gce":
        with sdk_imports():  # the driver's module imports google.api_core: not beside the warm-up's imports
            from routectl.cloud.gce import GCERouteDriver as cls

        if "cluster_name" not in settings and "cluster_id" in settings:
            settings["cluster_name"] = settings["cluster_id"]
    elif provider == "aws":
        with sdk_imports():
            from routectl.cloud.aws import AWSRouteDriver as cls  # type: ignore[assignment]

        if "cluster_id" not in settings and "cluster_name" in settings:
            settings["cluster_id"] = settings["cluster_name"]
    else:
        raise ValueError(f"unknown cloud provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    params = inspect.signature(cls).parameters
    unknown = sorted(k for k in settings if k not in params and k not in _COMMON)
    if unknown:
        raise ValueError(f"unknown {provider} driver setting(s): {', '.join(unknown)}; "
                         f"known: {', '.join(p for p in params if p != 'self')}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in settings
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise ValueError(f"{provider} driver needs setting(s): {', '.join(missing)}")
    for key in ("tags", "route_table_ids", "cluster_cidrs"):
        if isinstance(settings.get(key), str):
            settings[key] = [s.strip() for s in settings[key].split(",") if s.strip()]
    return cls(**{k: v for k, v in settings.items() if k in params})
