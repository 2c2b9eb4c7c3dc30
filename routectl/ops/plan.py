"""`routectl plan`: what the controller would change in the cloud's routes right now, touching nothing.

Reads Nodes and PodCIDRPools (GET only), lists the cloud routes and quotas and resolves next hops in
check-only mode through the controller's own RouteReconciler.plan(), and predicts the block each waiting
node would get on a private, rebuilt copy of the IPAM. Prints per table the routes to create, replace,
delete and keep, the creates refused by the route limit, headroom after the change, and warnings.
Exit 0 on success (whatever the plan), 1 when the cluster or the cloud cannot be read, 2 on bad usage.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from routectl.ops.options import cloud_options, config_from, output_option


def build_plan_report(config: Any) -> dict[str, Any]:
    """Read the cluster and the cloud (read-only) and build the plan report dict."""
    from routectl.ops.cloud import read_plan
    from routectl.ops.kube import read_cluster
    from routectl.ops.plan_report import plan_report
    from routectl.ops.planning import node_routes, pool_set, predict_allocations

    objs = read_cluster(config.kubeconfig)
    pools = pool_set(objs.pools)
    waiting, ipam = predict_allocations(pools, objs.nodes)
    route_plan = read_plan(config, pools, node_routes(objs.nodes))
    return plan_report(provider=config.provider, plan=route_plan, waiting=waiting, pools=objs.pools,
                       ipam=ipam)


@click.command("plan")
@cloud_options
@output_option
def plan(output: str, **flags: Any) -> None:
    """Show the route changes the controller would make (create / replace / delete / keep per table, with
    headroom after the change); read-only: nothing in the cluster or the cloud is modified."""
    from routectl.ops.cloud import CloudReadError
    from routectl.ops.kube import KubeReadError

    config = config_from(flags)
    try:
        report = build_plan_report(config)
    except (KubeReadError, CloudReadError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        from routectl.ops.render import render_plan

        click.echo(render_plan(report))
