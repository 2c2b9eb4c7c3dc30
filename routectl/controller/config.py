"""Controller configuration: one frozen dataclass filled from command-line flags and ROUTECTL_* env vars.

Flags win over the environment, the environment over the defaults; `validate()` turns bad input into
one clear message before anything connects anywhere.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field, fields, replace
from typing import Any

from routectl.constants import CLUSTER_EVENT_NAMESPACE

PROVIDERS = ("gce", "aws")

# Field name -> environment variable. Every field can be set either way (README documents the list).
ENV_VARS: dict[str, str] = {
    "cluster_name": "ROUTECTL_CLUSTER_NAME",
    "provider": "ROUTECTL_PROVIDER",
    "kubeconfig": "KUBECONFIG",
    "gce_project": "ROUTECTL_GCE_PROJECT",
    "gce_network": "ROUTECTL_GCE_NETWORK",
    "gce_endpoint": "ROUTECTL_GCE_ENDPOINT",
    "aws_region": "ROUTECTL_AWS_REGION",
    "aws_route_table_ids": "ROUTECTL_AWS_ROUTE_TABLE_IDS",
    "aws_endpoint": "ROUTECTL_AWS_ENDPOINT",
    "resync_seconds": "ROUTECTL_RESYNC_SECONDS",
    "cloud_rate": "ROUTECTL_CLOUD_RATE",
    "cloud_burst": "ROUTECTL_CLOUD_BURST",
    "quota_recheck_seconds": "ROUTECTL_QUOTA_RECHECK_SECONDS",
    "concurrency": "ROUTECTL_CONCURRENCY",
    "health_address": "ROUTECTL_HEALTH_ADDRESS",
    "leader_elect": "ROUTECTL_LEADER_ELECT",
    "lease_name": "ROUTECTL_LEASE_NAME",
    "lease_namespace": "ROUTECTL_LEASE_NAMESPACE",
    "lease_duration": "ROUTECTL_LEASE_DURATION",
    "renew_deadline": "ROUTECTL_RENEW_DEADLINE",
    "retry_period": "ROUTECTL_RETRY_PERIOD",
    "identity": "ROUTECTL_IDENTITY",
    "event_namespace": "ROUTECTL_EVENT_NAMESPACE",
    "metrics_public": "ROUTECTL_METRICS_PUBLIC",
}

# In a pod, the namespace of its service account (controller-runtime's default for the leader Lease).
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def pod_namespace(path: str = SA_NAMESPACE_FILE) -> str | None:
    """The pod's own namespace from the service-account namespace file; None outside a cluster."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _default_identity() -> str:
    """Pod name in a cluster (POD_NAME from the downward API), else host name; plus a unique suffix."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Config:
    """Everything `routectl controller` needs to know; immutable once validated."""

    cluster_name: str = "routectl"
    provider: str | None = None  # required: a silent default made "no flags" fail with an unrelated message
    kubeconfig: str | None = None
    # GCE
    gce_project: str | None = None
    gce_network: str = "default"
    gce_endpoint: str | None = None
    # AWS
    aws_region: str = "us-east-1"
    aws_route_table_ids: tuple[str, ...] = ()
    aws_endpoint: str | None = None
    # Loops and limits
    resync_seconds: float = 300.0
    # Mutating cloud calls per second and burst; None: the provider's default, below its published refill
    # (aws 4/s burst 40 under EC2's 5/s bucket 50; gce 20/s burst 50 under 1,500 mutations per minute).
    cloud_rate: float | None = None
    cloud_burst: int | None = None
    # Cloud calls in flight. A GCE route insert holds its slot until its operation is DONE (seconds on a
    # busy project), so routes/s <= concurrency / operation latency: 100 keeps 20/s up to 5 s.
    concurrency: int = 100
    # How often the route quota is re-read while a table is full (nodes wait for room or ride the overlay);
    # otherwise it is cached for the driver's own TTL (AWS 1 h, GCE 10 min).
    quota_recheck_seconds: float = 300.0
    # Serving
    health_address: str = "0.0.0.0:8080"
    # /metrics answers loopback clients only unless true (the pod runs with hostNetwork: the port is the
    # node's, so the cloud and call figures would be open to anyone who reaches the node).
    metrics_public: bool = False
    # Leader election (coordination.k8s.io Lease), client-go's defaults.
    leader_elect: bool = True
    lease_name: str = "routectl-controller"
    lease_namespace: str = "kube-system"  # in a pod, unless set: the pod's own namespace (load_config)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = field(default_factory=_default_identity)
    # Namespace where Events about cluster-scoped objects (Nodes, Pools) are written: the API accepts
    # only "default" for those (kept as a setting so that a wrong value is refused at start-up).
    event_namespace: str = CLUSTER_EVENT_NAMESPACE

    def validate(self) -> Config:
        """Return self, or raise ValueError naming every bad setting at once."""
        problems: list[str] = []
        if not self.provider:
            problems.append(f"--provider (or ROUTECTL_PROVIDER) is required: {' or '.join(PROVIDERS)}")
        elif self.provider not in PROVIDERS:
            problems.append(f"provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if not self.cluster_name or len(self.cluster_name) > 40:
            problems.append("cluster name must be 1..40 characters (it prefixes cloud route names)")
        if self.provider == "gce" and not self.gce_project:
            problems.append("gce needs a project (--gce-project / ROUTECTL_GCE_PROJECT)")
        if self.resync_seconds <= 0:
            problems.append("resync period must be > 0 seconds")
        if self.quota_recheck_seconds <= 0:
            problems.append("quota recheck period must be > 0 seconds")
        if (self.cloud_rate is not None and self.cloud_rate <= 0) or \
                (self.cloud_burst is not None and self.cloud_burst < 1) or self.concurrency < 1:
            problems.append("cloud rate must be > 0, burst and concurrency >= 1")
        if not (0 < self.retry_period < self.renew_deadline < self.lease_duration):
            problems.append("leader election needs 0 < retry period < renew deadline < lease duration")
        if self.event_namespace != CLUSTER_EVENT_NAMESPACE:
            problems.append(
                f"event namespace must be {CLUSTER_EVENT_NAMESPACE!r}, not {self.event_namespace!r}: "
                "every Event routectl posts is about a cluster-scoped object (Node, PodCIDRPool), and the "
                f"API accepts those only in namespace {CLUSTER_EVENT_NAMESPACE!r}")
        if ":" not in self.health_address:
            problems.append(f"health address must be HOST:PORT, not {self.health_address!r}")
        if problems:
            raise ValueError("invalid controller configuration: " + "; ".join(problems))
        return self

    @property
    def health_host(self) -> str:
        """Host part of the liveness/metrics address."""
        return self.health_address.rsplit(":", 1)[0]

    @property
    def health_port(self) -> int:
        """Port of the liveness/metrics address (0 picks a free one)."""
        return int(self.health_address.rsplit(":", 1)[1])

    def driver_settings(self) -> dict[str, Any]:
        """Keyword settings for routectl.cloud.factory.make_driver, only those of the chosen provider."""
        common: dict[str, Any] = {"concurrency": self.concurrency,
                                  "quota_full_ttl": self.quota_recheck_seconds}
        if self.cloud_rate is not None:
            common["rate"] = self.cloud_rate
        if self.cloud_burst is not None:
            common["burst"] = self.cloud_burst
        if self.provider == "gce":
            return {"project": self.gce_project, "network": self.gce_network,
                    "endpoint": self.gce_endpoint, "cluster_name": self.cluster_name, **common}
        # AWS finds its tables by the tag kubernetes.io/cluster/<cluster name> unless IDs are given.
        return {"region": self.aws_region, "route_table_ids": list(self.aws_route_table_ids) or None,
                "endpoint_url": self.aws_endpoint, "cluster_id": self.cluster_name, **common}


def _coerce(name: str, raw: Any) -> Any:
    """Turn a flag/env string into the field's type."""
    default = getattr(Config, name, None) if name != "identity" else ""
    if name == "cloud_rate":
        return float(raw)
    if name == "cloud_burst":
        return int(raw)
    if name == "aws_route_table_ids":
        if isinstance(raw, (list, tuple)):
            return tuple(str(x) for x in raw if str(x))
        return tuple(p.strip() for p in str(raw).split(",") if p.strip())
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, int):
        return int(raw)
    return str(raw) if raw is not None else None


def load_config(flags: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                namespace_file: str = SA_NAMESPACE_FILE) -> Config:
    """Build a validated Config: flags (None = not given) over env vars over defaults; in a pod the
    Lease namespace defaults to the pod's own (the manifests and RBAC put the Lease there)."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    for name, var in ENV_VARS.items():
        if var in env and env[var] != "":
            try:
                values[name] = _coerce(name, env[var])
            except ValueError as exc:
                raise ValueError(f"invalid controller configuration: {var}={env[var]!r}: {exc}") from None
    for name, raw in (flags or {}).items():
        if name not in known:
            raise ValueError(f"unknown controller setting {name!r}")
        if raw is None or (name == "aws_route_table_ids" and not raw):
            continue
        values[name] = _coerce(name, raw)
    if "lease_namespace" not in values and (own := pod_namespace(namespace_file)):
        values["lease_namespace"] = own
    return replace(Config(), **values).validate()
