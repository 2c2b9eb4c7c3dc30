"""`routectl ipam`: offline planner: which blocks N new nodes would get from given pools (no cluster needed).

    routectl ipam --pool deploy/examples/pool-aws.yaml --nodes 3
    routectl ipam --pool pools.yaml --existing nodes.yaml --nodes 10 --label zone=a --output json

--pool files hold PodCIDRPool objects (several YAML documents or a List). --existing holds the
current nodes, either Node objects (a NodeList, a List or documents; spec.podCIDRs / spec.podCIDR and
metadata.labels are read) or a plain mapping ``node-name: [cidr, ...]``. Existing CIDRs are occupied
first (findings reported), then N new nodes are allocated; the plan, pool usage, pool problems and
findings are printed. Exit code 1 when not every new node got a block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from routectl.constants import POOL_KIND
from routectl.ipam.allocator import Allocation, Allocator, Finding, NodeCIDRs
from routectl.ipam.errors import IPAMError, PoolSpecError
from routectl.ipam.model import PoolSpec
from routectl.routes.model import node_pod_cidrs


def _documents(path: Path) -> list[Any]:
    """All YAML/JSON documents of a file, with `List`-style objects flattened to their items."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}") from None
    out: list[Any] = []
    for d in docs:
        if (
            isinstance(d, dict)
            and isinstance(d.get("items"), list)
            and str(d.get("kind", "")).endswith("List")
        ):
            out.extend(d["items"])
        elif isinstance(d, list):
            out.extend(d)
        else:
            out.append(d)
    return out


def load_pools(paths: list[Path]) -> list[PoolSpec]:
    """PoolSpecs from the PodCIDRPool objects in `paths` (other kinds skipped); bad shapes: usage error."""
    specs: list[PoolSpec] = []
    for path in paths:
        for doc in _documents(path):
            if isinstance(doc, dict) and doc.get("kind") == POOL_KIND:
                try:
                    specs.append(PoolSpec.from_resource(doc))
                except PoolSpecError as exc:
                    raise click.BadParameter(f"{path}: {exc}", param_hint="--pool") from None
    if not specs:
        raise click.BadParameter(
            f"no {POOL_KIND} object found in {', '.join(map(str, paths))}", param_hint="--pool"
        )
    return specs


def load_nodes(path: Path) -> list[NodeCIDRs]:
    """Existing nodes from Node objects or a `name: [cidrs]` mapping."""
    docs = _documents(path)
    if len(docs) == 1 and isinstance(docs[0], dict) and "kind" not in docs[0]:
        nodes = []
        for name, cidrs in docs[0].items():
            cidrs = [cidrs] if isinstance(cidrs, str) else cidrs
            if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
                raise click.BadParameter(
                    f"{path}: {name} must map to a CIDR or a list of CIDRs", param_hint="--existing"
                )
            nodes.append(NodeCIDRs(str(name), tuple(cidrs)))
        return nodes
    nodes = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind", "Node") != "Node":
            continue
        meta = doc.get("metadata") or {}
        cidrs = node_pod_cidrs(doc)
        if not meta.get("name"):
            raise click.BadParameter(f"{path}: a Node without metadata.name", param_hint="--existing")
        nodes.append(NodeCIDRs(meta["name"], tuple(cidrs), dict(meta.get("labels") or {})))
    return nodes


def plan(
    pools: list[PoolSpec], existing: list[NodeCIDRs], count: int, labels: dict[str, str], prefix: str
) -> dict[str, Any]:
    """Run the allocator offline; return a JSON-ready report (pure apart from the allocator itself)."""
    alloc = Allocator()
    problems = alloc.set_pools(pools)
    findings: list[Finding] = alloc.rebuild(existing)
    taken = {n.name for n in existing}
    new: list[Allocation] = []
    error = ""
    n = 0
    while len(new) < count:
        n += 1
        name = f"{prefix}{n:04d}"
        if name in taken:
            continue
        try:
            new.append(alloc.allocate(name, labels))
        except IPAMError as exc:
            error = str(exc)
            break
    return {
        "plan": [{"node": a.node, "pool": a.pool, "cidrs": list(a.cidrs)} for a in new],
        "requested": count,
        "error": error,
        "usage": [
            {"pool": u.pool, "allocated": u.allocated, "capacity": u.capacity, "free": u.free}
            for u in (alloc.usage(name) for name in sorted(alloc.pools))
        ],
        "problems": {k: v for k, v in sorted(problems.items()) if v},
        "findings": [
            {"node": f.node, "cidr": f.cidr, "kind": f.kind, "message": f.message} for f in findings
        ],
    }


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not key=value", param_hint="--label")
        out[key] = val
    return out


@click.command("ipam")
@click.option(
    "--pool",
    "pool_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with PodCIDRPool object(s); repeatable.",
)
@click.option(
    "--nodes", "count", type=click.IntRange(min=0), required=True, help="How many new nodes to plan."
)
@click.option("--existing", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Existing nodes: Node objects or a `name: [cidrs]` mapping.")  # fmt: skip
@click.option("--label", "labels", multiple=True, help="Label key=value of the new nodes (for nodeSelector).")
@click.option("--prefix", default="node-", show_default=True, help="Name prefix of the planned nodes.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def ipam(
    pool_files: tuple[Path, ...],
    count: int,
    existing: Path | None,
    labels: tuple[str, ...],
    prefix: str,
    output: str,
) -> None:
    """Plan pod CIDR blocks for N new nodes from PodCIDRPool files, offline."""
    report = plan(
        load_pools(list(pool_files)),
        load_nodes(existing) if existing else [],
        count,
        _parse_labels(labels),
        prefix,
    )
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        rows = [["NODE", "POOL", "CIDRS"]] + [
            [p["node"], p["pool"], ",".join(p["cidrs"])] for p in report["plan"]
        ]
        click.echo(_table(rows))
        click.echo("")
        urows = [["POOL", "ALLOCATED", "CAPACITY", "FREE", "VALID"]] + [
            [u["pool"], str(u["allocated"]), str(u["capacity"]), str(u["free"]),
             "no" if u["pool"] in report["problems"] else "yes"]
            for u in report["usage"]
        ]  # fmt: skip
        click.echo(_table(urows))
        for pool, msgs in report["problems"].items():
            for m in msgs:
                click.echo(f"problem: {pool}: {m}")
        for f in report["findings"]:
            click.echo(f"finding: {f['kind']}: {f['message']}")
    if report["error"]:
        click.echo(f"error: planned {len(report['plan'])} of {count} nodes: {report['error']}", err=True)
        raise SystemExit(1)
