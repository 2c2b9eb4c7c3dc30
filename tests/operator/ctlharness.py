"""The real Controller against the embedded API server and fake GCE, with watch delivery in the test's hands.

kopf's part (list, watch, index, call the handlers) is played by `Delivery`: the test decides when each
object's newest state reaches the controller's index and handlers, so a stale index (the watch lagging our
own writes) and per-object delayed or reordered delivery are reproducible instead of timing luck.
Everything else is real: Controller, Allocator, RouteReconciler, the GCE driver over HTTP, the API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from routectl.constants import API_VERSION, POOL_KIND
from routectl.controller.kube import KubeClient
from routectl.controller.main import build_routes
from routectl.controller.reconcile import Controller
from routectl.controller.state import NodeView, PoolView
from routectl.routes.model import node_pod_cidrs
from routectl.sim.cluster import SimCluster


class Index(dict[str, list[Any]]):
    """A kopf-style index: key -> store of one view (what the handlers' index kwargs look like)."""

    def put(self, name: str, view: Any) -> None:
        self[name] = [view]

    def drop(self, name: str) -> None:
        self.pop(name, None)


class Delivery:
    """Watch delivery under test control. `observe()` records every version of every Node the API shows
    (a per-object event queue, in order, as a watch would bring them); `deliver_node` hands the next
    queued version (or, with `skip`, a later one: kopf may coalesce) to the index and the handler.
    Pools are delivered newest-first (pool_changed reads only the index)."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.nodes = Index()
        self.pools = Index()
        self.queue: dict[str, list[dict[str, Any] | None]] = {}
        self._last_rv: dict[str, str | None] = {}
        self._last_uid: dict[str, str | None] = {}

    def api_nodes(self) -> dict[str, dict[str, Any]]:
        return {n["metadata"]["name"]: n for n in self.sim.nodes()}

    def api_pools(self) -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in self.sim.pools()}

    def observe(self) -> None:
        """Queue every Node version (and deletion) that appeared since the last call."""
        api = self.api_nodes()
        for name, body in api.items():
            rv = body["metadata"]["resourceVersion"]
            uid = body["metadata"].get("uid")
            if self._last_uid.get(name) not in (None, uid) and self._last_rv.get(name) is not None:
                self.queue.setdefault(name, []).append(None)  # re-created: the old object's DELETED first
            if self._last_rv.get(name) != rv:
                self.queue.setdefault(name, []).append(body)
                self._last_rv[name] = rv
            self._last_uid[name] = uid
        for name in [n for n, rv in self._last_rv.items() if rv is not None and n not in api]:
            self.queue.setdefault(name, []).append(None)
            self._last_rv[name] = None

    def pending_nodes(self) -> list[str]:
        """Nodes with versions not delivered yet."""
        return sorted(n for n, q in self.queue.items() if q)

    def pending_pools(self) -> list[str]:
        api = self.api_pools()
        out = [n for n, body in api.items() if n not in self.pools or
               self.pools[n][0].body["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]]
        return sorted(out + [n for n in self.pools if n not in api])

    async def deliver_node(self, ctl: Controller, name: str, skip: int = 0) -> None:
        """Hand node `name`'s next queued version (after dropping `skip` of them) to index and handler."""
        q = self.queue.get(name) or []
        if not q:
            return
        while skip > 0 and len(q) > 1 and q[0] is not None and q[1] is not None:  # a DELETED is never skipped
            del q[0]
            skip -= 1
        body = q.pop(0)
        if body is None:
            gone = self.nodes.get(name)
            self.nodes.drop(name)
            if gone is not None:
                await ctl.node_event(_body_of(gone[0]), "DELETED", self.nodes, self.pools)
            return
        self.nodes.put(name, NodeView.from_body(body))
        await ctl.node_event(body, "MODIFIED", self.nodes, self.pools)

    async def deliver_pool(self, ctl: Controller, name: str) -> None:
        body = await asyncio.to_thread(lambda: self.api_pools().get(name))
        if body is None:
            self.pools.drop(name)
        else:
            self.pools.put(name, PoolView.from_body(body))
        await ctl.pool_changed(self.nodes, self.pools)

    def list_all(self) -> None:
        """A fresh LIST into both indexes (what a (re)starting kopf does before calling handlers); the
        listed versions are queued for the handlers, nothing older."""
        self.nodes.clear()
        self.pools.clear()
        self.queue.clear()
        self._last_rv.clear()
        self._last_uid.clear()
        for name, body in self.api_nodes().items():
            self.nodes.put(name, NodeView.from_body(body))
        self.observe()
        for name, body in self.api_pools().items():
            self.pools.put(name, PoolView.from_body(body))


def _body_of(view: NodeView) -> dict[str, Any]:
    return {"metadata": {"name": view.name, "uid": view.uid, "resourceVersion": view.resource_version},
            "spec": {"providerID": view.provider_id, "podCIDRs": list(view.pod_cidrs)}}


def new_controller(sim: SimCluster, identity: str = "ctl-a") -> Controller:
    """A Controller wired like run_controller() does, minus kopf and the Lease."""
    config = sim.config(identity=identity)
    client = KubeClient(sim.kube.url, user_agent=f"routectl-test ({identity})")
    return Controller(config, client, lambda cidrs, warn: build_routes(config, cidrs, warn))


async def stop_controller(ctl: Controller) -> None:
    await ctl.close()
    await ctl.client.close()


def pod_cidrs_of(body: dict[str, Any]) -> tuple[str, ...]:
    return node_pod_cidrs(body)


def duplicate_blocks(nodes: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> list[str]:
    """Texts of every pair of live Nodes whose podCIDRs overlap."""
    import ipaddress

    held = [(n["metadata"]["name"], ipaddress.ip_network(c, strict=False))
            for n in nodes for c in pod_cidrs_of(n)]
    out = []
    for i, (a, na) in enumerate(held):
        for b, nb in held[i + 1:]:
            if a != b and na.version == nb.version and na.overlaps(nb):
                out.append(f"{a} {na} / {b} {nb}")
    return out


def edit_pool(sim: SimCluster, name: str, spec: dict[str, Any]) -> None:
    sim.kube.patch(API_VERSION, POOL_KIND, name, {"spec": spec})
