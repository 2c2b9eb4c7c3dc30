"""`routectl simulate`: the whole system on an embedded default — Kubernetes API emulator, fake cloud (moto
for AWS, the fake GCE server for GCE) and the REAL controller (`run_controller`, as in production) — run
until convergence, then reported per node, per route table and per warning.

Built on routectl.sim.cluster.SimCluster. Progress goes to stderr, the result to stdout. After convergence
the cloud is read once more through the same driver and RouteReconciler.plan() that `routectl plan` uses
(read-only), which gives the routes per table, the tables' used/limit and structured route-limit warnings.

JSON output (`--output json`), schema version 1 (stable; documented in docs/simulate-json.md and checked
by routectl.ops.schema.SIMULATE_SCHEMA)::

    {"schemaVersion": 1, "kind": "SimulationReport", "cloud": "aws"|"gce", "converged": bool,
     "failure": str|null, "elapsedSeconds": float,
     "settings": {"nodes", "poolCIDR", "mask", "routeLimit", "timeout"},
     "pools": [{"name", "cidrs", "nodeMaskSizeIPv4", "nodeSelector", "allocated", "free", "capacity",
                "routesProgrammed", "conditions": [{"type", "status", "reason", "message"}]}],
     "nodes": [{"name", "podCIDRs": [str], "routes": [{"table", "destination", "nextHop", "state"}],
                "networkUnavailable": {"status", "reason", "message"}}],
     "routeTables": [{"id", "used", "limit", "free", "quota", "note"}],
     "warnings": [{"kind", "pool", "table", "used", "limit", "refused", "message", "advice": [str]}],
     "summary": {"nodes", "withPodCIDR", "routed", "withoutRoute", "warnings"}}

Exit codes: 0 converged (warnings included), 1 not converged within --timeout or the controller failed,
2 bad usage.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from routectl.constants import POOL_EXHAUSTED, POOL_INVALID

EXIT_CONVERGED = 0
EXIT_FAILED = 1
# How long a stalled state (nodes that can never get a block) must last before simulate gives up early.
STALL_SECONDS = 2.0
POLL_SECONDS = 0.25
DEFAULT_POOL = "10.244.0.0/16"
GCE_DEFAULT_QUOTA = 250  # the fake GCE's STATIC_ROUTES_PER_NETWORK quota


def fit_defaults(cloud: str, nodes: int, mask: int, pool_cidr: str | None,
                 route_limit: int | None) -> tuple[str, int | None, list[str]]:
    """The pool CIDR and route limit to simulate when the user gave none: the defaults when N fits them,
    else a pool of 10.0.0.0/k holding N blocks and (GCE) a STATIC_ROUTES_PER_NETWORK quota of 2N, each
    said in one line. AWS keeps the simulated account's 50 per table and family: past it, the wall shows."""
    notes: list[str] = []
    if pool_cidr is None:
        pool_cidr = DEFAULT_POOL
        prefix = ipaddress.ip_network(DEFAULT_POOL).prefixlen
        if mask >= prefix and nodes > 2 ** (mask - prefix):
            bits = math.ceil(math.log2(nodes))
            pool_cidr = f"10.0.0.0/{max(8, mask - bits)}"
            notes.append(f"{nodes} nodes do not fit {DEFAULT_POOL} in /{mask} blocks: simulating pool "
                         f"{pool_cidr} (choose with --pool-cidr)")
    if route_limit is None and cloud == "gce" and nodes > GCE_DEFAULT_QUOTA * 0.8:
        route_limit = 2 * nodes
        notes.append(f"{nodes} nodes need more routes than the default STATIC_ROUTES_PER_NETWORK quota of "
                     f"{GCE_DEFAULT_QUOTA}: "
                     f"simulating a quota of {route_limit} (choose with --route-limit)")
    return pool_cidr, route_limit, notes


def check_settings(nodes: int, pool_cidr: str, mask: int, timeout: float, route_limit: int | None) -> str:
    """Return the canonical pool CIDR, or raise click.BadParameter naming what is wrong."""
    try:
        net = ipaddress.ip_network(pool_cidr, strict=True)
    except ValueError as exc:
        raise click.BadParameter(f"{pool_cidr!r} is not a network CIDR ({exc})", param_hint="--pool-cidr") \
            from None
    if net.version != 4:
        raise click.BadParameter("the simulation's default pool is IPv4; give an IPv4 CIDR",
                                 param_hint="--pool-cidr")
    if not net.prefixlen <= mask <= 32:
        raise click.BadParameter(f"node mask /{mask} must be between the pool's /{net.prefixlen} and /32",
                                 param_hint="--mask")
    if mask - net.prefixlen > 16:
        raise click.BadParameter(f"a /{net.prefixlen} pool with /{mask} blocks has more than 2^16 blocks",
                                 param_hint="--mask")
    if nodes < 0:
        raise click.BadParameter("must be >= 0", param_hint="--nodes")
    if timeout <= 0:
        raise click.BadParameter("must be > 0 seconds", param_hint="--timeout")
    if route_limit is not None and route_limit < 1:
        raise click.BadParameter("must be >= 1", param_hint="--route-limit")
    return str(net)


def settled_count(nodes: Sequence[Mapping[str, Any]]) -> int:
    """Nodes that have a podCIDR and a NetworkUnavailable condition routectl wrote (success or a reason)."""
    from routectl.sim.cluster import settled_by_routectl

    return sum(1 for n in nodes if (n.get("spec") or {}).get("podCIDR") and settled_by_routectl(n))


def stall_reason(nodes: Sequence[Mapping[str, Any]], pools: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the simulation can never converge, or None: every node with a block is settled, the others
    have none, and a pool says it is exhausted or invalid (or no pool exists at all)."""
    from routectl.ops.report import find_condition, name_of, pod_cidrs
    from routectl.sim.cluster import settled_by_routectl

    waiting = [n for n in nodes if not pod_cidrs(n)]
    if not waiting or any(pod_cidrs(n) and not settled_by_routectl(n) for n in nodes):
        return None
    if not pools:
        return f"{len(waiting)} node(s) cannot get a pod CIDR: no PodCIDRPool exists"
    reasons = []
    for p in pools:
        status = p.get("status") or {}
        if status.get("observedGeneration") != (p.get("metadata") or {}).get("generation"):
            return None  # the controller has not caught up with this pool yet
        for kind in (POOL_EXHAUSTED, POOL_INVALID):
            c = find_condition(p, kind)
            if c and c.get("status") == "True":
                reasons.append(f"pool {name_of(p)} {kind}: {c.get('message', '')}")
    if not reasons:
        return None
    return f"{len(waiting)} node(s) cannot get a pod CIDR: " + "; ".join(reasons)


def wait(sim: Any, timeout: float, on_progress: Callable[[int], None]) -> tuple[bool, str | None]:
    """Poll the cluster until converged (True, None), a failure (False, why) or `timeout` (False, why)."""
    deadline = time.monotonic() + timeout
    stalled_since: float | None = None
    while True:
        nodes = sim.node_digests()
        on_progress(settled_count(nodes))
        if sim.converged():
            return True, None
        for c in sim.controllers:
            if not c.alive:
                why = f"{type(c.error).__name__}: {c.error}" if c.error else f"exit code {c.exit_code}"
                return False, f"the controller stopped: {why}"
        stall = stall_reason(nodes, sim.pools())
        now = time.monotonic()
        if stall is None:
            stalled_since = None
        elif stalled_since is None:
            stalled_since = now
        elif now - stalled_since >= STALL_SECONDS:
            return False, stall
        if now >= deadline:
            settled = settled_count(nodes)
            return False, (f"not converged within {timeout:g}s ({settled}/{len(nodes)} nodes settled)"
                           + (f"; {stall}" if stall else ""))
        time.sleep(POLL_SECONDS)


def build_report(sim: Any, *, converged: bool, failure: str | None, elapsed: float,
                 settings: Mapping[str, Any]) -> dict[str, Any]:
    """Read the final state (API objects + a read-only cloud plan) into the schema-1 report dict."""
    from routectl.ops.cloud import CloudReadError, read_plan
    from routectl.ops.planning import node_routes, pool_set
    from routectl.ops.report import simulate_report

    nodes, pools = sim.nodes(), sim.pools()
    plan = None
    try:
        plan = read_plan(sim.config(), pool_set(pools), node_routes(nodes))
    except CloudReadError as exc:
        failure = f"{failure}; {exc}" if failure else str(exc)
        converged = False
    return simulate_report(
        cloud=sim.cloud, converged=converged, elapsed=elapsed, failure=failure, nodes=nodes, pools=pools,
        routes=plan.routes if plan else [], caps=plan.tables if plan else [],
        limit_warnings=plan.warnings if plan else None, settings=settings)


class _Progress:
    """Settled-node counter on stderr: a click progress bar (a live bar on a terminal, quiet otherwise)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self._bar: Any = None
        if enabled:
            self._bar = click.progressbar(length=max(total, 1), label="converging nodes",
                                          file=click.get_text_stream("stderr"), show_pos=True,
                                          show_eta=False, width=30)
            self._bar.__enter__()

    def update(self, settled: int) -> None:
        if self._bar is not None and settled > self.done:
            self._bar.update(settled - self.done)
        self.done = max(self.done, settled)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.command("simulate")
@click.option("--cloud", type=click.Choice(["aws", "gce"]), required=True,
              help="Fake cloud to run against: moto (aws) or the fake GCE server (gce).")
@click.option("--nodes", "node_count", type=int, default=10, show_default=True, help="Nodes to create.")
@click.option("--pool-cidr", default=None,
              help=f"CIDR of the default pool [default: {DEFAULT_POOL}, or a 10.0.0.0/k that fits --nodes].")
@click.option("--mask", type=int, default=24, show_default=True, help="Node block size (prefix length).")
@click.option("--route-limit", type=int, default=None,
              help="AWS: routes per route table and IP family (default 50, the pre-2025 quota many "
                   "accounts still have; 500 is EC2's default since 2025-06). GCE: the network's "
                   f"STATIC_ROUTES_PER_NETWORK quota (default {GCE_DEFAULT_QUOTA}, or 2 x --nodes when "
                   "that is too small).")
@click.option("--overflow", type=click.Choice(["none", "overlay"]), default="none", show_default=True,
              help="What nodes past the route limit get: none (flagged, as spec.routeLimitFallback: None) "
                   "or overlay (the pool's routeLimitFallback: Overlay: they ride the VXLAN overlay).")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for convergence once the cluster is up, before giving up (exit 1).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar of converged nodes on stderr.")
@click.option("--log-level", default="ERROR", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level of the embedded controller and emulators (stderr).")
def simulate(cloud: str, node_count: int, pool_cidr: str | None, mask: int, route_limit: int | None,
             overflow: str,
             timeout: float, output: str, progress: bool, log_level: str) -> None:
    """Run the real controller on an emulated cluster and cloud until convergence; report what it did.

    Per node: podCIDR, route, next hop, NetworkUnavailable. Per route table: used/limit. Every warning
    with its advice. Exit 0 when converged (warnings included), 1 when not, 2 on bad usage.
    """
    pool_cidr, route_limit, notes = fit_defaults(cloud, node_count, mask, pool_cidr, route_limit)
    pool_cidr = check_settings(node_count, pool_cidr, mask, timeout, route_limit)
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(getattr(logging, log_level.upper()))
    from routectl.sim.cluster import SimCluster

    settings = {"nodes": node_count, "poolCIDR": pool_cidr, "mask": mask, "routeLimit": route_limit,
                "timeout": timeout, **({"overflow": overflow} if overflow != "none" else {})}
    err = click.get_text_stream("stderr")
    for note in notes:
        click.echo(f"note: {note}", file=err)
    started = time.monotonic()
    if progress:
        click.echo(f"starting the Kubernetes API emulator, the fake {cloud} cloud and "
                   f"{node_count} node(s)...", file=err)
    sim = SimCluster(cloud=cloud, nodes=node_count, pool_cidr=pool_cidr, mask=mask, route_limit=route_limit,
                     route_limit_fallback="Overlay" if overflow == "overlay" else None)
    try:
        try:
            sim.start()
        except Exception as exc:
            raise click.ClickException(f"could not start the simulation: {type(exc).__name__}: {exc}") \
                from exc
        bar = _Progress(node_count, progress)
        try:
            converged, failure = wait(sim, timeout, bar.update)
        finally:
            bar.close()
        elapsed = time.monotonic() - started
        report = build_report(sim, converged=converged, failure=failure, elapsed=elapsed, settings=settings)
    finally:
        sim.stop()
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        from routectl.ops.render import render_simulate

        click.echo(render_simulate(report))
    sys.exit(EXIT_CONVERGED if report["converged"] else EXIT_FAILED)
