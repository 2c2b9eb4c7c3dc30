"""A whole cluster in one process: Kubernetes API emulator + fake cloud + the real routectl controller.

`SimCluster` is what `routectl simulate` and the operator tests build on. It starts a KubeServer, a fake
cloud (moto for AWS, the fake GCE server for GCE), installs the PodCIDRPool CRD and a default pool,
creates Nodes the way a kubelet registers them (providerID, usual conditions, NetworkUnavailable=True)
with a matching instance in the cloud, and runs the controller through `run_controller()` — the same
code path as `routectl controller` — in a background thread with its own event loop. `snapshot()`
reports what a person would look at: each node's block, route and condition, table headroom, warnings.

    with SimCluster(cloud="aws", nodes=60) as sim:
        sim.wait_converged(timeout=60)
        print(sim.snapshot().to_dict())
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from routectl.constants import (
    API_VERSION,
    CONDITION_NETWORK_UNAVAILABLE,
    POOL_KIND,
    POOL_ROUTE_LIMIT_NEARING,
    POOL_ROUTE_LIMIT_REACHED,
    REASON_NO_ROUTE_CREATED,
    REASON_ROUTE_CREATED,
)
from routectl.controller.config import Config
from routectl.routes.fallback import REASON_ROUTE_OVERLAY

# What a kubelet (with an external cloud provider) writes when it registers: no route yet.
KUBELET_NO_ROUTE_MESSAGE = "Node created without a route"
AWS_CREDENTIALS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}


def kubelet_node(name: str, provider_id: str, zone: str,
                 labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Node object as a kubelet registers it: providerID, labels, the usual conditions."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def cond(ctype: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}

    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "topology.kubernetes.io/zone": zone, **(labels or {})}},
        "spec": {"providerID": provider_id},
        "status": {"conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            cond(CONDITION_NETWORK_UNAVAILABLE, "True", REASON_NO_ROUTE_CREATED, KUBELET_NO_ROUTE_MESSAGE),
        ]},
    }


def network_condition(node: dict[str, Any]) -> dict[str, Any] | None:
    """The node's NetworkUnavailable condition, or None."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == CONDITION_NETWORK_UNAVAILABLE:
            return c
    return None


def _digest(node: dict[str, Any]) -> dict[str, Any]:
    """A Node cut down to its name, podCIDR(s) and NetworkUnavailable condition (a copy)."""
    spec = node.get("spec") or {}
    cond = network_condition(node)
    return {"metadata": {"name": node["metadata"]["name"]},
            "spec": {k: copy.deepcopy(spec[k]) for k in ("podCIDR", "podCIDRs") if k in spec},
            "status": {"conditions": [dict(cond)] if cond else []}}


def settled_by_routectl(node: dict[str, Any]) -> bool:
    """True once routectl has written the node's NetworkUnavailable condition (success or a reason)."""
    c = network_condition(node)
    if c is None:
        return False
    return c.get("reason") == REASON_ROUTE_CREATED or c.get("message") != KUBELET_NO_ROUTE_MESSAGE


@dataclass

class NodeReport:
    """One node as the simulation shows it."""

    name: str
    pod_cidr: str | None
    route: str | None            # destination of its cloud route(s), None when absent
    next_hop: str | None         # instance URL (GCE) or ENI id (AWS)
    network_unavailable: str     # "False"/"True"
    reason: str
    message: str


# The simulated AWS account's routes per table and family: the pre-2025 default of 50 (still what older
# accounts have), so `routectl simulate --cloud aws --nodes 60` shows the wall; --route-limit 500 = a new one.
SIM_AWS_ROUTE_LIMIT = 50


@dataclass
class Snapshot:
    """What the cluster looks like now (for `routectl simulate` and tests)."""

    cloud: str
    nodes: list[NodeReport] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, str | None] = field(default_factory=dict)  # every owned-by-anyone destination -> hop

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return asdict(self)


class SimCluster:
    """Emulated API + fake cloud + the real controller; see the module docstring."""

    def __init__(self, cloud: str = "aws", nodes: int = 0, *, pool_cidr: str = "10.244.0.0/16",
                 mask: int = 24,
                 route_limit: int | None = None, cluster_name: str = "sim", resync_seconds: float = 30.0,
                 zones: tuple[str, ...] | None = None, pool_name: str = "default",
                 lease_duration: float = 15.0, run_controller: bool = True,
                 route_limit_fallback: str | None = None, quota_recheck_seconds: float = 300.0) -> None:
        if cloud not in ("aws", "gce"):
            raise ValueError(f"cloud must be 'aws' or 'gce', not {cloud!r}")
        self.cloud = cloud
        self.initial_nodes = nodes
        self.pool_cidr = pool_cidr
        self.mask = mask
        self.route_limit = route_limit
        self.cluster_name = cluster_name
        self.resync_seconds = resync_seconds
        self.quota_recheck_seconds = quota_recheck_seconds  # quota re-read period while a table is full
        self.pool_name = pool_name
        self.lease_duration = lease_duration
        self.auto_controller = run_controller
        self.route_limit_fallback = route_limit_fallback  # the default pool's spec.routeLimitFallback
        self.zones = zones or (("us-east-1a",) if cloud == "aws" else ("us-central1-a",))
        self.kube: Any = None
        self.aws: Any = None
        self.gce: Any = None
        self.node_names: list[str] = []
        self._seq = 0
        self._controllers: list[ControllerThread] = []
        self._digests: dict[str, tuple[str, dict[str, Any]]] = {}  # Node name -> (resourceVersion, digest)

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> SimCluster:
        """Start everything; the controller runs when `run_controller` was left True."""
        from routectl.crd import load_crd
        from routectl.sim.kube import KubeServer

        self.kube = KubeServer().start()
        try:
            if self.cloud == "aws":
                from routectl.sim.aws import MotoAWS

                for k, v in AWS_CREDENTIALS_ENV.items():
                    os.environ.setdefault(k, v)
                self.aws = MotoAWS(cluster_id=self.cluster_name, azs=self.zones,
                                   route_limit=self.route_limit or SIM_AWS_ROUTE_LIMIT,
                                   nodes=max(2 * self.initial_nodes, 250)).start()
            else:
                from routectl.sim.fake_gce import FakeGCE

                # 2026: static routes count against STATIC_ROUTES_PER_NETWORK; the project ROUTES quota is
                # deprecated (not reported)
                self.gce = FakeGCE(routes_quota=None, static_routes_quota=self.route_limit or 250).start()
            self.kube.install_crd(load_crd())
            fallback = {"routeLimitFallback": self.route_limit_fallback} if self.route_limit_fallback else {}
            self.create_pool(self.pool_name, [self.pool_cidr], mask=self.mask, **fallback)
            self.add_nodes(self.initial_nodes)
            if self.auto_controller:
                self.start_controller()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the controllers, the cloud fake and the API emulator."""
        for c in list(self._controllers):
            c.stop()
        self._controllers.clear()
        for thing in (self.aws, self.gce, self.kube):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.stop()

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ controller
    def config(self, **overrides: Any) -> Config:
        """The controller configuration pointing at this cluster's fakes (what the CLI flags would say)."""
        base: dict[str, Any] = {
            "cluster_name": self.cluster_name, "provider": self.cloud,
            "kubeconfig": self.kube.kubeconfig_path,
            "resync_seconds": self.resync_seconds, "health_address": "127.0.0.1:0",
            "lease_name": "routectl-controller", "lease_namespace": "default",
            "lease_duration": self.lease_duration, "renew_deadline": self.lease_duration * 0.6,
            "retry_period": max(0.2, self.lease_duration / 8), "concurrency": 16,
            "cloud_rate": 200.0, "cloud_burst": 200, "quota_recheck_seconds": self.quota_recheck_seconds,
        }
        if self.cloud == "aws":
            base.update(aws_region=self.aws.region, aws_endpoint=self.aws.endpoint)
        else:
            base.update(gce_project=self.gce.project, gce_network=self.gce.network,
                        gce_endpoint=self.gce.endpoint)
        base.update(overrides)
        from dataclasses import replace

        return replace(Config(), **base).validate()

    def controller_env(self) -> dict[str, str]:
        """Environment for running `routectl controller` as a subprocess against this cluster."""
        cfg = self.config()
        env = {"KUBECONFIG": self.kube.kubeconfig_path, "ROUTECTL_CLUSTER_NAME": cfg.cluster_name,
               "ROUTECTL_PROVIDER": cfg.provider, "ROUTECTL_RESYNC_SECONDS": str(cfg.resync_seconds),
               "ROUTECTL_HEALTH_ADDRESS": "127.0.0.1:0", "ROUTECTL_LEASE_NAMESPACE": cfg.lease_namespace,
               "ROUTECTL_LEASE_DURATION": str(cfg.lease_duration),
               "ROUTECTL_RENEW_DEADLINE": str(cfg.renew_deadline),
               "ROUTECTL_RETRY_PERIOD": str(cfg.retry_period), "ROUTECTL_CONCURRENCY": str(cfg.concurrency),
               "ROUTECTL_CLOUD_RATE": str(cfg.cloud_rate), "ROUTECTL_CLOUD_BURST": str(cfg.cloud_burst),
               "ROUTECTL_QUOTA_RECHECK_SECONDS": str(cfg.quota_recheck_seconds)}
        if self.cloud == "aws":
            env.update(AWS_CREDENTIALS_ENV, ROUTECTL_AWS_REGION=cfg.aws_region,
                       ROUTECTL_AWS_ENDPOINT=cfg.aws_endpoint or "")
        else:
            env.update(ROUTECTL_GCE_PROJECT=cfg.gce_project or "", ROUTECTL_GCE_NETWORK=cfg.gce_network,
                       ROUTECTL_GCE_ENDPOINT=cfg.gce_endpoint or "")
        return env

    def start_controller(self, **overrides: Any) -> ControllerThread:
        """Run one more controller (it waits for the Lease if another one leads)."""
        thread = ControllerThread(self.config(**overrides))
        thread.start()
        self._controllers.append(thread)
        return thread

    @property
    def controllers(self) -> list[ControllerThread]:
        """Controllers started by this cluster (running or not)."""
        return list(self._controllers)

    # ------------------------------------------------------------------------------ arrangement
    def create_pool(self, name: str, cidrs: list[str], *, mask: int = 24,
                    node_selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        """Create a PodCIDRPool."""
        body: dict[str, Any] = {"cidrs": cidrs, "nodeMaskSizeIPv4": mask, **spec}
        if node_selector:
            body["nodeSelector"] = node_selector
        return self.kube.create({"apiVersion": API_VERSION, "kind": POOL_KIND, "metadata": {"name": name},
                                 "spec": body})

    def add_nodes(self, count: int, prefix: str = "node", labels: dict[str, str] | None = None) -> list[str]:
        """Create `count` instances in the cloud and their Nodes; returns the names."""
        names = []
        for _ in range(count):
            self._seq += 1
            name = f"{prefix}-{self._seq:04d}"
            zone = self.zones[self._seq % len(self.zones)]
            if self.cloud == "aws":
                pid = self.aws.add_node(name, zone, source_dest_check=False)
            else:
                pid = self.gce.add_instance(zone, name)
            self.kube.create(kubelet_node(name, pid, zone, labels))
            names.append(name)
        self.node_names.extend(names)
        return names

    def delete_node(self, name: str, *, instance: bool = True) -> None:
        """Delete a Node (and its instance, as a cluster autoscaler would)."""
        self.kube.delete("v1", "Node", name)
        if name in self.node_names:
            self.node_names.remove(name)
        if instance:
            if self.cloud == "aws":
                self.aws.terminate_node(name)
            else:
                zone = next((z for (z, n) in self.gce.instances if n == name), None)
                if zone is not None:
                    self.gce.remove_instance(zone, name)

    # ------------------------------------------------------------------------------ inspection
    def nodes(self) -> list[dict[str, Any]]:
        """Every Node object."""
        return self.kube.list("v1", "Node")

    def node_digests(self) -> list[dict[str, Any]]:
        """Every Node cut down to what progress checks read (name, podCIDR(s), NetworkUnavailable), built
        inside the emulator (read-only: a digest is kept until its Node changes).

        A poller copying every whole Node four times a second loaded the emulator's loop and made a
        simulation overstate the controller's own cost; rebuilding every digest on every poll was still
        O(N) work per poll, 40 % of the simulation's CPU at 5,000 nodes. A stored Node is replaced on
        each write, with a new resourceVersion: only those digests are built again."""
        def do(store: Any) -> list[dict[str, Any]]:
            known, fresh, out = self._digests, {}, []
            for (_, name), n in store.objects[store.find_type("v1", "Node").key].items():
                rv = n["metadata"]["resourceVersion"]
                hit = known.get(name)
                if hit is None or hit[0] != rv:
                    hit = (rv, _digest(n))
                fresh[name] = hit
                out.append(hit[1])
            self._digests = fresh
            return out
        return self.kube.read(do)

    def pools(self) -> list[dict[str, Any]]:
        """Every PodCIDRPool object."""
        return self.kube.list(API_VERSION, POOL_KIND)

    def cloud_routes(self) -> dict[str, str | None]:
        """Destination -> next hop of every route in the cluster's table(s) (AWS: first table)."""
        if self.cloud == "aws":
            out: dict[str, str | None] = {}
            for table in self.aws.route_table_ids:
                for dest, r in self.aws.routes(table).items():
                    out.setdefault(dest, r["target"])
            return out
        return {r["destRange"]: r.get("nextHopInstance") or r.get("nextHopGateway")
                for r in self.gce.routes_snapshot().values()}

    def converged(self) -> bool:
        """Every node has a podCIDR and a NetworkUnavailable condition written by routectl, and the pools'
        status counts them (observedGeneration current)."""
        nodes = self.node_digests()
        if not all((n.get("spec") or {}).get("podCIDR") and settled_by_routectl(n) for n in nodes):
            return False
        pools = self.pools()
        for p in pools:
            status = p.get("status") or {}
            if status.get("observedGeneration") != p["metadata"].get("generation"):
                return False
        routed = sum(1 for n in nodes if (c := network_condition(n) or {}).get("status") == "False"
                     and c.get("reason") != REASON_ROUTE_OVERLAY)  # overlay nodes have no route
        overlay = sum(1 for n in nodes if (network_condition(n) or {}).get("reason") == REASON_ROUTE_OVERLAY)
        return (sum((p.get("status") or {}).get("allocated", 0) for p in pools) == len(nodes)
                and sum((p.get("status") or {}).get("routesProgrammed", 0) for p in pools) == routed
                and sum((p.get("status") or {}).get("overlayNodes") or 0 for p in pools) == overlay)

    def wait_converged(self, timeout: float = 120.0, interval: float = 0.25) -> bool:
        """Poll `converged()` until true (returns True) or `timeout` (returns False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.converged():
                return True
            time.sleep(interval)
        return self.converged()

    def snapshot(self) -> Snapshot:
        """Nodes with block, route, next hop and condition; tables; warnings; pool statuses."""
        routes = self.cloud_routes()
        snap = Snapshot(self.cloud, routes=routes)
        for n in sorted(self.nodes(), key=lambda n: n["metadata"]["name"]):
            cidr = (n.get("spec") or {}).get("podCIDR")
            c = network_condition(n) or {}
            snap.nodes.append(NodeReport(
                n["metadata"]["name"], cidr, cidr if cidr in routes else None,
                routes.get(cidr) if cidr else None,
                c.get("status", ""), c.get("reason", ""), c.get("message", "")))
        for p in self.pools():
            status = p.get("status") or {}
            snap.pools[p["metadata"]["name"]] = status
            for t in status.get("routeTables") or []:
                if t not in snap.tables:
                    snap.tables.append(t)
            for c in status.get("conditions") or []:
                if c.get("type") in (POOL_ROUTE_LIMIT_REACHED, POOL_ROUTE_LIMIT_NEARING) and \
                        c.get("status") == "True" and c.get("message") not in snap.warnings:
                    snap.warnings.append(c["message"])
        return snap


class ControllerThread:
    """One in-process controller: `run_controller()` on its own event loop in a daemon thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.controller: Any = None
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"routectl-{config.identity}", daemon=True)

    def start(self) -> None:
        """Start the thread; returns once its loop runs."""
        self._thread.start()
        self._started.wait(timeout=30)

    def _run(self) -> None:
        from routectl.controller.main import run_controller

        async def main() -> int:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            return await run_controller(self.config, stop=self._stop,
                                        on_controller=lambda c: setattr(self, "controller", c))
        try:
            self.exit_code = asyncio.run(main())
        except BaseException as exc:  # surfaced to the caller through .error
            self.error = exc
        finally:
            self._started.set()

    @property
    def alive(self) -> bool:
        """True while the controller thread runs."""
        return self._thread.is_alive()

    @property
    def is_leader(self) -> bool:
        """True once this controller is ready as the leader."""
        return self.controller is not None and self.controller.ready and self.alive

    def stop(self, timeout: float = 20.0) -> None:
        """Ask it to stop (it releases the Lease) and wait for the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
