"""kopf wiring: indexes, event handlers and settings, each a one-line adapter over `Controller`.

Nodes are known through routectl's own NodeCache (one LIST, then fed by the Node events below) when one
is given, instead of a kopf index whose start-up grows as N^2 (routectl.controller.nodecache).

Nodes get only an index and an on.event handler: kopf stores no progress and adds no finalizer for
them, so a converged restart writes nothing to Nodes. Pools get a deletion handler, which makes kopf
keep our finalizer (routectl.io/in-use) on them until no node holds a block from them. One registry per
controller, so several controllers (tests, the simulator) can live in one process.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from routectl.constants import GROUP, POOL_FINALIZER, POOL_PLURAL, VERSION
from routectl.controller.nodecache import NodeCache
from routectl.controller.reconcile import Controller
from routectl.controller.state import NodeView, PoolView

log = logging.getLogger(__name__)

# Kwarg names under which kopf passes the indexes to every handler.
NODE_INDEX = "routectl_nodes"
POOL_INDEX = "routectl_pools"


def build_registry(controller: Controller, login: Any = None,
                   nodes: NodeCache | None = None) -> kopf.OperatorRegistry:
    """A fresh kopf registry whose handlers all delegate to `controller`; Nodes come from `nodes` when
    given (else from a kopf index)."""
    registry = kopf.OperatorRegistry()

    if login is not None:  # explicit credentials: no reliance on $KUBECONFIG read at import time
        kopf.on.login(registry=registry, id="routectl-login")(login)

    if nodes is None:
        @kopf.index("", "v1", "nodes", registry=registry, id=NODE_INDEX)
        def routectl_nodes(name: str, body: kopf.Body, **_: Any) -> dict[str, NodeView]:
            return {name: NodeView.from_body(body)}

    async def node_index(kw: dict[str, Any]) -> Any:
        if nodes is None:
            return kw[NODE_INDEX]
        await nodes.ready()
        return nodes

    @kopf.index(GROUP, VERSION, POOL_PLURAL, registry=registry, id=POOL_INDEX)
    def routectl_pools(name: str, body: kopf.Body, **_: Any) -> dict[str, PoolView]:
        return {name: PoolView.from_body(body)}

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_event(body: kopf.Body, type: str | None, **kw: Any) -> None:
        if nodes is not None:  # before the Controller sees the event: the cache is never behind it
            nodes.apply(type, body)
        await controller.node_event(body, type, await node_index(kw), kw[POOL_INDEX])

    @kopf.on.event(GROUP, VERSION, POOL_PLURAL, registry=registry)
    async def pool_event(**kw: Any) -> None:
        await controller.pool_changed(await node_index(kw), kw[POOL_INDEX])

    @kopf.on.delete(GROUP, VERSION, POOL_PLURAL, registry=registry)
    async def pool_delete(name: str, **kw: Any) -> None:
        await controller.ensure_ready(await node_index(kw), kw[POOL_INDEX])
        holders = controller.pool_holders(name)
        if holders:
            await controller.flush_pool_status()
            raise kopf.TemporaryError(
                f"pool {name} is still used by {len(holders)} node(s): {', '.join(holders[:20])}",
                delay=max(1.0, min(10.0, controller.config.resync_seconds)))

    _ = (routectl_pools, node_event, pool_event, pool_delete)
    return registry


def configure_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """kopf settings: our finalizer name, progress in annotations, no k8s-event posting, standalone."""
    settings = settings or kopf.OperatorSettings()
    settings.persistence.finalizer = POOL_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.enabled = False  # our own Events say what matters; kopf's would be noise
    settings.peering.standalone = True  # a Lease decides who runs (routectl.controller.leader)
    settings.scanning.disabled = True  # resources are named explicitly; no CRD list permission needed
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.connect_timeout = 10
    return settings
