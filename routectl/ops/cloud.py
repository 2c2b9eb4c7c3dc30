"""Read-only access to the cluster's cloud routes for plan/status/simulate, through the SAME driver and
RouteReconciler the controller uses (routectl.controller.main.build_routes), so what they report is what
the controller would see. Only `RouteReconciler.plan()` is called here: it lists, reads quotas and resolves
next hops in check-only mode; it never creates, replaces, deletes or fixes anything."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from routectl.cloud.reconcile import RoutePlan
from routectl.controller.config import Config
from routectl.ipam.model import node_masks
from routectl.ops.planning import PoolSet
from routectl.routes.model import NodeRoutes


class CloudReadError(Exception):
    """The cloud could not be read (bad settings, unreachable endpoint, denied)."""


def read_plan(config: Config, pools: PoolSet, nodes: Sequence[NodeRoutes]) -> RoutePlan | None:
    """RouteReconciler.plan() for `nodes` over the pools' CIDRs; None when no pool defines a CIDR."""
    from routectl.controller.main import build_routes

    if not pools.cluster_cidrs:
        return None
    try:
        reconciler: Any = build_routes(config, list(pools.cluster_cidrs), pools.warn_percent)
        reconciler.set_node_masks(node_masks(pools.specs))
        return reconciler.plan(list(nodes))
    except Exception as exc:  # any SDK / transport error: one clear message for the CLI
        raise CloudReadError(f"cannot read {config.provider} routes: {type(exc).__name__}: {exc}") from exc
