"""The agent's view of Kubernetes: its own Node (by field selector) and the PodCIDRPools, plus Node Events.

The own-Node and pool watches only serve as triggers; every sync re-reads the Node and lists the pools,
so a missed or broken watch can delay a change by at most one resync period. Every other Node (the
overlay's peers) comes from a `NodeCache`: one LIST, then a WATCH, started only when the overlay first
needs it, so a cluster without an Overlay pool never lists Nodes and one with it lists them once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, watch

from routectl.agent.nodecache import NodeCache
from routectl.constants import EVENT_MASQUERADE_INVALID, GROUP, POOL_PLURAL, VERSION

log = logging.getLogger(__name__)

AGENT_COMPONENT = "routectl-agent"
_WATCH_SECONDS = 300


def load_api_client(kubeconfig: str | None) -> client.ApiClient:
    """ApiClient from `kubeconfig`, else in-cluster config, else the default kubeconfig."""
    if kubeconfig:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class KubeSource:
    """Reads this node and the pools, triggers syncs from watches and records Events on the Node."""

    def __init__(self, api: client.ApiClient, node_name: str, *, watch_all_nodes: bool = False) -> None:
        self.api = api
        self.watch_all_nodes = watch_all_nodes  # the overlay: any Node's podCIDRs/IP/transport matter
        self.node_name = node_name
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._watches: list[watch.Watch] = []
        self._node_uid: str | None = None
        self._trigger: threading.Event | None = None
        self._stop: threading.Event | None = None
        self.node_cache: NodeCache | None = None  # started by the first list_nodes() of a watching agent

    def fetch(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The Node (as a camelCase dict) and every PodCIDRPool."""
        node = self.api.sanitize_for_serialization(self.core.read_node(self.node_name))
        self._node_uid = (node.get("metadata") or {}).get("uid")
        pools = self.custom.list_cluster_custom_object(GROUP, VERSION, POOL_PLURAL)
        return node, list(pools.get("items") or [])

    def list_nodes(self) -> list[dict[str, Any]]:
        """Every Node as a plain dict (read-only; the overlay needs their podCIDRs, IPs and transport).

        Once the watches run, the first call LISTs and starts the all-Nodes watch; later calls read that
        cache. Without running watches (`--once`) it is a plain LIST.
        """
        if self._stop is None or self._trigger is None or not self.watch_all_nodes:
            resp = self.core.list_node(_preload_content=False)
            return list(json.loads(resp.data).get("items") or [])
        if self.node_cache is None:
            cache = NodeCache(self.core, self._trigger.set)
            cache.start(self._stop)  # a failed first LIST raises here: the sync fails, nothing is torn down
            self.node_cache = cache
        return self.node_cache.nodes()

    def record_event(self, message: str, reason: str = EVENT_MASQUERADE_INVALID) -> None:
        """A Warning Event on the Node (namespace default, as the kubelet does) with `message`."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        uid = self._node_uid
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{self.node_name}.{uuid.uuid4().hex[:16]}", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                               **({"uid": uid} if uid else {})},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": AGENT_COMPONENT, "host": self.node_name},
            "reportingComponent": AGENT_COMPONENT,
            "reportingInstance": self.node_name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.core.create_namespaced_event("default", body)

    def start_watches(self, trigger: threading.Event, stop: threading.Event) -> list[threading.Thread]:
        """Background threads setting `trigger` on any change of this Node or of any pool (the other
        Nodes' changes trigger through the Node cache, once the overlay has started it)."""
        self._trigger, self._stop = trigger, stop
        own = {"field_selector": f"metadata.name={self.node_name}"}
        streams: list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
            ("node", self.core.list_node, (), own),
            ("pools", self.custom.list_cluster_custom_object, (GROUP, VERSION, POOL_PLURAL), {}),
        ]
        threads = []
        for name, func, args, kwargs in streams:
            t = threading.Thread(target=self._watch_loop, args=(name, func, args, kwargs, trigger, stop),
                                 name=f"watch-{name}", daemon=True)
            t.start()
            threads.append(t)
        return threads

    def stop_watches(self) -> None:
        """Ask running watch streams to end."""
        for w in list(self._watches):
            w.stop()
        if self.node_cache is not None:
            self.node_cache.close()

    def _watch_loop(self, name: str, func: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], trigger: threading.Event, stop: threading.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            w = watch.Watch()
            self._watches.append(w)
            try:
                for _event in w.stream(func, *args, timeout_seconds=_WATCH_SECONDS,
                                      _request_timeout=_WATCH_SECONDS + 30, **kwargs):
                    trigger.set()
                    backoff = 1.0
                    if stop.is_set():
                        break
            except Exception as exc:  # network errors, 410 Gone, emulator restarts: retry with backoff
                log.warning("watch %s failed: %s; retrying in %.0fs", name, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self._watches.remove(w)
