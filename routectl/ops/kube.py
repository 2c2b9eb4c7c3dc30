"""Read-only Kubernetes access for plan/status: list Nodes, PodCIDRPools and Events with the official client.

Only GET requests are made (list with paging), under the user agent `routectl-ops/<version>` so that an
audit log (or the emulator's request log) shows exactly what plan/status did. Credentials load the
standard way: --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the pod's service account.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from routectl import __version__
from routectl.constants import GROUP, POOL_PLURAL, VERSION

USER_AGENT = f"routectl-ops/{__version__}"
PAGE = 500


class KubeReadError(Exception):
    """The Kubernetes API could not be read (no credentials, unreachable, denied, CRD missing)."""


@dataclass
class ClusterObjects:
    """What plan/status read from the API, as plain dicts."""

    host: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pools: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def api_client(kubeconfig: str | None) -> Any:
    """An official-client ApiClient with our user agent (in cluster when no kubeconfig is at hand)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if kubeconfig is None and "KUBECONFIG" not in os.environ and in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            # $KUBECONFIG is read now, not when the kubernetes package was imported
            config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"),
                                    client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeReadError(f"no usable Kubernetes credentials ({where}): {exc}") from None
    cfg.retries = 2
    api = client.ApiClient(cfg)
    api.user_agent = USER_AGENT
    return api


def _list_all(call: Callable[..., Any], what: str, host: str) -> list[dict[str, Any]]:
    """Every item of a list call, page by page (raw JSON: no model conversion)."""
    from kubernetes.client.exceptions import ApiException

    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"limit": PAGE, "_preload_content": False}
        if token:
            kw["_continue"] = token
        try:
            resp = call(**kw)
        except ApiException as exc:
            if exc.status == 404 and what == "podcidrpools":
                raise KubeReadError(
                    f"the PodCIDRPool CRD ({POOL_PLURAL}.{GROUP}) is not installed at {host}") from None
            if exc.status in (401, 403):
                raise KubeReadError(
                    f"not allowed to list {what} at {host}: {exc.status} {exc.reason}") from None
            raise KubeReadError(f"listing {what} at {host} failed: {exc.status} {exc.reason}") from None
        except Exception as exc:  # urllib3 connection errors and the like
            raise KubeReadError(f"cannot reach the Kubernetes API at {host}: {type(exc).__name__}: {exc}") \
                from None
        body = json.loads(resp.data)
        items += body.get("items") or []
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return items


def read_cluster(kubeconfig: str | None, *, events: bool = False) -> ClusterObjects:
    """List Nodes and PodCIDRPools (and Events when asked); GET requests only."""
    from kubernetes import client

    api = api_client(kubeconfig)
    host = api.configuration.host
    try:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        out = ClusterObjects(host)
        out.nodes = _list_all(core.list_node, "nodes", host)
        out.pools = _list_all(
            lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, **kw),
            "podcidrpools", host)
        if events:
            out.events = _list_all(core.list_event_for_all_namespaces, "events", host)
        return out
    finally:
        api.close()
