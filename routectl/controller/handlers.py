"""kopf wiring: the PodCIDRPool deletion handler (and its finalizer) and the operator settings.

Nodes and pools are watched by routectl's own informers (routectl.controller.nodecache), driven by
`Controller.run`: kopf's per-object machinery on every Node heartbeat, and its index readiness that
grows as N^2, made a 5,000-node cluster wait minutes for its first block. kopf stays the framework for
what it does well here: a deletion handler makes kopf keep our finalizer (routectl.io/in-use) on each
pool until no node holds a block from it. One registry per controller, so several controllers (tests,
the simulator) can live in one process.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from routectl.constants import GROUP, POOL_FINALIZER, POOL_PLURAL, VERSION
from routectl.controller.reconcile import Controller

log = logging.getLogger(__name__)


def build_registry(controller: Controller, login: Any = None) -> kopf.OperatorRegistry:
    """A fresh kopf registry whose pool deletion handler delegates to `controller`."""
    registry = kopf.OperatorRegistry()

    if login is not None:  # explicit credentials: no reliance on $KUBECONFIG read at import time
        kopf.on.login(registry=registry, id="routectl-login")(login)

    @kopf.on.delete(GROUP, VERSION, POOL_PLURAL, registry=registry)
    async def pool_delete(name: str, **_: Any) -> None:
        await controller.wait_ready()
        holders = controller.pool_holders(name)
        if holders:
            await controller.flush_pool_status()
            raise kopf.TemporaryError(
                f"pool {name} is still used by {len(holders)} node(s): {', '.join(holders[:20])}",
                delay=max(1.0, min(10.0, controller.config.resync_seconds)))

    _ = pool_delete
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
