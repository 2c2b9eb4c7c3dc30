"""`routectl status`: pools and their usage, route tables used/limit, nodes without routes and why, warnings
with advice and routectl's recent Warning events — read-only, like `routectl plan`.

The cloud is read through the controller's own RouteReconciler.plan() (lists and quotas only); with
--no-cloud the route tables come from what the controller last wrote into the pools' status. Exit 0 when
everything could be read, 1 when the cluster (or, unless --no-cloud, the cloud) could not, 2 on bad usage.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from routectl.ops.options import cloud_options, config_from, output_option


def build_status_report(config: Any, *, cloud: bool) -> dict[str, Any]:
    """Read the cluster (and the cloud unless `cloud` is False) and build the status report dict."""
    from routectl.ops.cloud import CloudReadError, read_plan
    from routectl.ops.kube import read_cluster
    from routectl.ops.planning import node_routes, pool_set, predict_allocations
    from routectl.ops.status_report import status_report

    objs = read_cluster(config.kubeconfig if config is not None else None, events=True)
    pools = pool_set(objs.pools)
    waiting, ipam = predict_allocations(pools, objs.nodes)
    plan, error = None, None
    if cloud and config is not None:
        try:
            plan = read_plan(config, pools, node_routes(objs.nodes))
        except CloudReadError as exc:
            error = str(exc)
    return status_report(provider=config.provider if config is not None else None, nodes=objs.nodes,
                         pools=objs.pools, events=objs.events, plan=plan, waiting=waiting, ipam=ipam,
                         cloud_error=error)


@click.command("status")
@cloud_options
@output_option
@click.option("--cloud/--no-cloud", "read_cloud", default=True, show_default=True,
              help="Read route tables live from the cloud (else: from the pools' status).")
def status(output: str, read_cloud: bool, **flags: Any) -> None:
    """Show pools (usage as reported and recomputed), route tables (used/limit), nodes without routes and
    why, warnings with their advice and recent warning events. Read-only."""
    from routectl.ops.kube import KubeReadError

    if read_cloud:
        config = config_from(flags)
    else:
        from dataclasses import replace

        from routectl.controller.config import Config

        config = replace(Config(), kubeconfig=flags.get("kubeconfig") or None)
    try:
        report = build_status_report(config, cloud=read_cloud)
    except KubeReadError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        from routectl.ops.render import render_status

        click.echo(render_status(report))
    if report.get("cloudError"):
        sys.exit(1)
