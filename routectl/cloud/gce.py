"""GCE route driver on google-cloud-compute: routes with nextHopInstance in one VPC network.

Ownership needs three pieces of evidence: our name prefix, our description marker carrying the cluster
name, and our network.

Route limit: static routes count against STATIC_ROUTES_PER_NETWORK (every static route of the network,
IPv4 and IPv6 together, not only ours), read through the Cloud Quotas API (google-cloud-quotas, the
QuotaInfo of compute.googleapis.com), and, where a project still reports it, the deprecated project
ROUTES quota; the one with the least room binds and names itself in the advice. When neither can be read,
inserts are attempted and the first QUOTA_EXCEEDED teaches the limit (the network's count at that moment).
Global mutations (routes.insert/delete) are limited per project per minute (1,500/min by default):
`403 rateLimitExceeded` is retried like 429, and the default client rate stays below that budget.

Operations are waited on with our own GlobalOperationsClient (`insert_unary` +
`wait`): the extended-operation `.result()` ignores a custom endpoint (DESIGN.md §4).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlparse

from google.api_core import exceptions as gexc

from routectl.cloud.base import (
    REASON_CLOUD_ERROR,
    REASON_INSTANCE_NOT_FOUND,
    REASON_INVALID_PROVIDER_ID,
    REASON_PREREQUISITE_FAILED,
    CallCounter,
    CloudError,
    NodeProblem,
    RouteLimitError,
)
from routectl.cloud.caller import CloudCaller, LatencyWatch, UsesCloudCaller
from routectl.cloud.ratelimit import TokenBucket
from routectl.cloud.sdk import compute_service, compute_types, import_sdk_module, sdk_imports
from routectl.constants import ROUTE_DESCRIPTION_MARKER
from routectl.routes.model import CloudRoute, NodeRoutes, TableCapacity, canonical_cidr

log = logging.getLogger(__name__)

PROVIDER_ID_RE = re.compile(r"^gce://([a-z][-a-z0-9.:]*[a-z0-9])/([a-z]+-[a-z]+\d+-[a-z])/([a-z]([-a-z0-9]*[a-z0-9])?)$")
INSTANCE_PATH_RE = re.compile(r"projects/[^/]+/zones/[^/]+/instances/[^/]+$")
MAX_NAME = 63
PAGE_SIZE = 500
ZONE_RELIST_SECONDS = 5.0  # a zone listing is never repeated sooner, however many instances it misses
# Default rates: GCE allows 1,500 global mutations per project per minute (25/s) shared with every other
# tool of the project; stay well below.
DEFAULT_RATE = 20.0
DEFAULT_BURST = 50
QUOTAS_SERVICE = "compute.googleapis.com"
STATIC_ROUTES_QUOTA_ID = "STATIC-ROUTES-PER-NETWORK-per-project"
STATIC_ROUTES_METRIC = "compute.googleapis.com/static_routes_per_vpc_network"
QUOTAS_PERMISSION = "cloudquotas.quotas.get"
# With no readable quota at all, a bound no network reaches: inserts are attempted, QUOTA_EXCEEDED teaches.
UNKNOWN_LIMIT = 100_000
QUOTA_NAME_RE = re.compile(r"Quota '([A-Z_]+)'")
# A partial response (Google's `fields` system parameter, sent as the X-Goog-FieldMask header): only what
# _listed_route and _owned read. A route has twice as many fields as these (more on the real API:
# routeType, routeStatus, warnings, selfLink, id...), and a resync reads every route of the network.
ROUTE_LIST_FIELDS = ("nextPageToken,items(name,description,network,destRange,"
                     "nextHopInstance,nextHopGateway,nextHopIp,nextHopIlb)")

# client kind -> (service package of google.cloud.compute_v1, or "<package>:<service>"; client class)
CLIENT_KINDS = {
    "routes": ("routes", "RoutesClient"),
    "ops": ("global_operations", "GlobalOperationsClient"),
    "instances": ("instances", "InstancesClient"),
    "projects": ("projects", "ProjectsClient"),
    "networks": ("networks", "NetworksClient"),
    "quotas": ("cloudquotas_v1:cloud_quotas", "CloudQuotasClient"),
}


def _pin_environment(client: Any) -> None:
    """Read the proxy/CA settings of the environment once for this client's HTTP session, instead of on
    every call (requests re-reads .netrc, proxy variables and CA bundles per request with `trust_env`:
    about a tenth of a resync's CPU). The same settings apply; only netrc is dropped (its basic auth
    would replace the OAuth bearer token anyway)."""
    transport = getattr(client, "_transport", None)
    session = getattr(transport, "_session", None)
    host = getattr(transport, "_host", "")
    if session is None or not getattr(session, "trust_env", False):
        return
    import requests.utils

    url = host if "://" in host else f"https://{host}"
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


@functools.lru_cache(maxsize=1 << 14)
def instance_path(url: str | None) -> str | None:
    """`projects/p/zones/z/instances/i` from any form of an instance URL (full, relative); memoised, as
    every resync asks it for every listed route's next hop."""
    if not url:
        return None
    m = INSTANCE_PATH_RE.search(url)
    return m.group(0) if m else url


def _reason(exc: gexc.GoogleAPICallError) -> str:
    """First error reason of a Compute error answer (e.g. alreadyExists, QUOTA_EXCEEDED)."""
    for err in exc.errors or []:
        if isinstance(err, dict) and err.get("reason"):
            return str(err["reason"])
    return ""


def parse_provider_id(provider_id: str | None) -> tuple[str, str, str]:
    """(project, zone, instance) from `gce://project/zone/instance`; NodeProblem when malformed."""
    if not provider_id:
        raise NodeProblem(REASON_INVALID_PROVIDER_ID,
                          "node has no spec.providerID (is the cloud provider set up?)")
    m = PROVIDER_ID_RE.match(provider_id)
    if not m:
        raise NodeProblem(REASON_INVALID_PROVIDER_ID,
                          f"providerID {provider_id!r} is not of the form gce://<project>/<zone>/<instance>")
    return m.group(1), m.group(2), m.group(3)


def name_prefix(cluster_name: str) -> str:
    """RFC 1035 route name prefix for a cluster: `rc-<cluster>` cut so `<prefix>-<uid>-v6` fits 63 chars."""
    slug = re.sub(r"[^a-z0-9-]+", "-", cluster_name.lower()).strip("-") or "cluster"
    if len(slug) > 19:  # 63 - len("rc-") - 1 - 36 (uid) - 3 ("-v6") - 1 spare
        slug = slug[:13].rstrip("-") + "-" + hashlib.sha256(cluster_name.encode()).hexdigest()[:5]
    return f"rc-{slug}"


class GCERouteDriver(UsesCloudCaller):
    """Routes of one cluster in one GCE project/network (see module docstring)."""

    provider = "gce"

    def __init__(
        self,
        project: str,
        network: str,
        cluster_name: str,
        *,
        endpoint: str | None = None,
        priority: int = 1000,
        tags: Sequence[str] = (),
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        concurrency: int = 16,
        op_timeout: float = 120.0,
        call_timeout: float = 30.0,
        instance_list_threshold: int = 50,
        zone_list_ttl: float = 30.0,
        credentials: Any = None,
        static_routes_quota_id: str = STATIC_ROUTES_QUOTA_ID,
        quota_ttl: float = 600.0,
        quota_full_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not project or not network or not cluster_name:
            raise ValueError("GCE driver needs project, network and cluster_name")
        if not 0 <= priority <= 65535:
            raise ValueError(f"route priority must be 0..65535, got {priority}")
        self.project = project
        self.network = network
        self.cluster_name = cluster_name
        self.endpoint = endpoint
        self.priority = priority
        self.tags = list(tags)
        self.prefix = name_prefix(cluster_name)
        self.description = f"{ROUTE_DESCRIPTION_MARKER} cluster={cluster_name}"
        self.calls = CallCounter()
        self.caller = CloudCaller(self.calls, TokenBucket(rate, burst), concurrency,
                                  (gexc.GoogleAPICallError,))
        self.op_latency = LatencyWatch(concurrency, rate)  # says when operations, not the rate, bind
        self.op_timeout = op_timeout
        self.call_timeout = call_timeout
        # From this many nodes in one zone on, read the zone's instances with paged lists (500 per call,
        # needs compute.instances.list) instead of one GET per node; 0 disables. A 403 falls back to GETs.
        self.instance_list_threshold = instance_list_threshold
        self._list_denied = False
        self.zone_list_ttl = zone_list_ttl
        self._zones: dict[tuple[str, str], tuple[float, dict[str, bool]]] = {}  # -> (listed at, listing)
        self._concurrency = concurrency
        self._local = threading.local()
        self._credentials = credentials
        self.static_routes_quota_id = static_routes_quota_id
        self.quota_ttl = quota_ttl
        self.quota_full_ttl = quota_full_ttl  # the TTL while the quota was full at the last capacity()
        self.clock = clock
        self._full = False
        self._static_quota: tuple[float, int | None, str] | None = None  # (read at, limit, note)
        self._learned: tuple[float, int, str] | None = None  # (learned at, limit, quota name)
        self._network_id: str | None = None  # numeric id: the network_id dimension of per-network quotas

    # ----- plumbing -----
    def _client(self, kind: str) -> Any:
        """This thread's client of one kind, made on first use (a requests session per thread keeps
        connection pools uncontended; most worker threads only ever need routes and operations, and each
        client costs ~40 KB)."""
        clients: dict[str, Any] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        c = clients.get(kind)
        if c is None:
            c = clients[kind] = self._new_client(kind)
        return c

    def _new_client(self, kind: str) -> Any:
        """A client of `kind` on the REST transport (anonymous against a fake endpoint). Made under the
        SDK import lock: a client's first use imports its service and transport (routectl.cloud.sdk)."""
        module, cls_name = CLIENT_KINDS[kind]
        pkg, _, svc = module.rpartition(":")
        with sdk_imports():
            service = (import_sdk_module(f"google.cloud.{pkg}.services.{svc}") if pkg
                       else compute_service(module))
            cls = getattr(service, cls_name)
            if self.endpoint:
                from google.auth.credentials import AnonymousCredentials

                u = urlparse(self.endpoint)
                mod = import_sdk_module(f"{service.__name__}.transports.rest")
                transport_cls = next(getattr(mod, n) for n in dir(mod)
                                     if n.endswith("RestTransport") and not n.startswith("_"))
                client = cls(transport=transport_cls(host=u.netloc, url_scheme=u.scheme or "http",
                                                     credentials=AnonymousCredentials()))
            else:
                client = cls(credentials=self._credentials)
        _pin_environment(client)
        return client

    @property
    def network_path(self) -> str:
        """`projects/<p>/global/networks/<n>` as sent on insert."""
        return f"projects/{self.project}/global/networks/{self.network}"

    def route_name(self, node: NodeRoutes, destination: str) -> str:
        """`<prefix>-<node uid>` for the node's first IPv4 block, `-v6` for IPv6, `-<i>` for further ones.

        When that exceeds 63 characters the uid part is replaced by a hash of the uid (as long as fits),
        so names stay unique; names that fit are unchanged.
        """
        uid = re.sub(r"[^a-z0-9-]", "", (node.uid or "").lower())
        if not uid:
            uid = hashlib.sha256(node.name.encode()).hexdigest()[:32]
        net = ipaddress.ip_network(destination, strict=False)
        same = [c for c in node.pod_cidrs if ipaddress.ip_network(c, strict=False).version == net.version]
        canon = [canonical_cidr(c) for c in same]
        idx = canon.index(str(net)) if str(net) in canon else 0
        suffix = ("-v6" if net.version == 6 else "") + (f"-{idx}" if idx else "")
        base = f"{self.prefix}-{uid}".rstrip("-")
        if len(base) + len(suffix) > MAX_NAME:  # never cut the uid (names would collide): hash it to fit
            room = MAX_NAME - len(suffix) - len(self.prefix) - 1
            base = f"{self.prefix}-{hashlib.sha256(uid.encode()).hexdigest()[:room]}"
        return base + suffix

    def _owned(self, name: str, description: str, network: str) -> bool:
        """Whether a route with these fields is one of ours (name prefix, description, our network)."""
        path = self.network_path
        return (
            name.startswith(self.prefix + "-")
            and description == self.description
            and (network.rstrip("/").endswith("/" + path) or network == path)
        )

    def _to_cloud_route(self, r: Any) -> CloudRoute:
        """A raw protobuf Route (`compute.Route.pb(x)`, from routes.get) as a CloudRoute."""
        return self._cloud_route(r.name, r.dest_range, r.next_hop_instance,
                                 r.next_hop_gateway or r.next_hop_ip or r.next_hop_ilb, r.description,
                                 r.network)

    def _listed_route(self, r: dict[str, str]) -> CloudRoute:
        """One item of a routes.list JSON answer (camelCase, absent fields left out) as a CloudRoute."""
        get = r.get
        return self._cloud_route(get("name", ""), get("destRange", ""), get("nextHopInstance"),
                                 get("nextHopGateway") or get("nextHopIp") or get("nextHopIlb"),
                                 get("description", ""), get("network", ""))

    def _cloud_route(self, name: str, dest_range: str, hop_instance: str | None, other_hop: str | None,
                     description: str, network: str) -> CloudRoute:
        """A listed or read route as a CloudRoute: its next hop (an instance path, else the gateway, IP or
        load balancer it names) and whether it is ours."""
        target = instance_path(hop_instance) if hop_instance else (other_hop or None)
        return CloudRoute(table=self.network, destination=canonical_cidr(dest_range), target=target,
                          name=name, state="active", owned=self._owned(name, description, network))

    def _wait(self, operation: Any, what: str) -> None:
        compute = compute_types()

        op = operation
        deadline = time.monotonic() + self.op_timeout
        while op.status != compute.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise CloudError(f"{what}: operation {op.name} not DONE after {self.op_timeout}s")
            op = self._call("globalOperations.wait", lambda name=op.name: self._client("ops").wait(
                project=self.project, operation=name, retry=None, timeout=self.op_timeout))
        if op.error and op.error.errors:
            codes = [e.code for e in op.error.errors]
            msg = "; ".join(f"{e.code}: {e.message}" for e in op.error.errors)
            if "QUOTA_EXCEEDED" in codes:
                raise self._limit_error(what, msg)
            raise CloudError(f"{what}: operation {op.name} failed (HTTP {op.http_error_status_code}): {msg}")

    def _limit_error(self, what: str, message: str) -> RouteLimitError:
        """A QUOTA_EXCEEDED answer as a RouteLimitError carrying the limit learned from it."""
        limit, quota = self.learn_limit(message)
        at = f" (limit learned from GCE: {quota} at {limit} routes)" if limit is not None else ""
        return RouteLimitError(f"{what}: {message}{at}", limit=limit)

    # ----- protocol -----
    def list_tables(self) -> list[str]:
        """GCE has one route table per network: the network name."""
        return [self.network]

    def list_routes(self) -> list[CloudRoute]:
        """All routes of our network (paginated, filtered by network server-side)."""
        out: list[CloudRoute] = []
        token = ""
        while True:
            try:
                page = self._call("routes.list", lambda token=token: self._list_page(token))
            except gexc.GoogleAPICallError as e:
                raise CloudError(f"listing routes of {self.network_path}: {e.message}") from e
            out += [self._listed_route(r) for r in page.get("items", ())]
            token = page.get("nextPageToken", "")
            if not token:
                return out

    def _list_page(self, token: str) -> dict[str, Any]:
        """One page of routes.list as its JSON object, through the routes client's own authorized session.

        The client's `list` parses every answer from JSON into protobuf field by field in pure Python
        (google.protobuf.json_format): two thirds of a resync's CPU at 5,000 routes. This is the same GET
        the client sends (URI, query, field mask, credentials, proxies), parsed by the C JSON decoder;
        errors become the client's exceptions (`from_http_response`, as its transport does).
        """
        transport = self._client("routes")._transport
        params = {"maxResults": str(PAGE_SIZE), "filter": f'network eq ".*/{self.network_path}"'}
        if token:
            params["pageToken"] = token
        response = transport._session.get(
            f"{transport._host}/compute/v1/projects/{self.project}/global/routes", params=params,
            headers={"X-Goog-FieldMask": ROUTE_LIST_FIELDS, "Content-Type": "application/json"},
            timeout=self.call_timeout)
        if response.status_code >= 400:
            raise gexc.from_http_response(response)
        page: dict[str, Any] = json.loads(response.content)
        return page

    def resolve(self, node: NodeRoutes, *, check_only: bool = False) -> str:
        """`projects/p/zones/z/instances/i` for the node; checks the instance exists and has canIpForward.

        canIpForward cannot be changed on a running instance, so there is nothing to fix: `check_only`
        is accepted for symmetry with the AWS driver.
        """
        project, zone, name = parse_provider_id(node.provider_id)
        try:
            inst = self._call("instances.get", lambda: self._client("instances").get(
                project=project, zone=zone, instance=name, retry=None, timeout=self.call_timeout))
        except gexc.NotFound as e:
            raise NodeProblem(REASON_INSTANCE_NOT_FOUND, f"instance {name} in {project}/{zone} not found "
                              f"(providerID {node.provider_id})") from e
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"getting instance {project}/{zone}/{name}: {e.message}") from e
        return self._check_instance(node, project, zone, name, bool(inst.can_ip_forward))

    def _check_instance(self, node: NodeRoutes, project: str, zone: str, name: str,
                        can_ip_forward: bool | None) -> str:
        """The instance path, or the NodeProblem of an instance that is missing (None) or cannot forward."""
        if can_ip_forward is None:
            raise NodeProblem(REASON_INSTANCE_NOT_FOUND, f"instance {name} in {project}/{zone} not found "
                              f"(providerID {node.provider_id})")
        if not can_ip_forward:
            raise NodeProblem(REASON_PREREQUISITE_FAILED,
                              f"instance {project}/{zone}/{name} has canIpForward=false; GCE drops packets "
                              "for pod IPs unless the instance is created with --can-ip-forward")
        return f"projects/{project}/zones/{zone}/instances/{name}"

    def _list_zone(self, project: str, zone: str) -> dict[str, bool]:
        """Every instance of a zone: name -> canIpForward (all a route needs; not the whole message)."""
        compute = compute_types()

        found: dict[str, bool] = {}
        token = ""
        while True:
            req = compute.ListInstancesRequest(project=project, zone=zone, max_results=PAGE_SIZE,
                                                  page_token=token)
            page = self._call("instances.list", lambda req=req: self._client("instances").list(
                request=req, retry=None, timeout=self.call_timeout))
            found.update({i.name: bool(i.can_ip_forward) for i in page.items})
            token = page.next_page_token
            if not token:
                return found

    def resolve_many(self, nodes: Sequence[NodeRoutes], *,
                     check_only: bool = False) -> dict[str, str | NodeProblem]:
        """Resolve many nodes: zones with many nodes are read with paged instance lists (500 per call)
        instead of one GET per node; small groups use GETs. Per-node problems are returned, not raised."""
        from concurrent.futures import ThreadPoolExecutor

        out: dict[str, str | NodeProblem] = {}
        groups: dict[tuple[str, str], list[tuple[NodeRoutes, str]]] = {}
        for n in nodes:
            try:
                project, zone, name = parse_provider_id(n.provider_id)
            except NodeProblem as p:
                out[n.name] = p
                continue
            groups.setdefault((project, zone), []).append((n, name))
        singles: list[NodeRoutes] = []
        now = time.monotonic()
        for (project, zone), members in groups.items():
            threshold = self.instance_list_threshold
            # A zone listed a moment ago is read from that listing: a burst of new nodes comes in many
            # batches, and listing the zone per batch was O(N^2). An instance newer than the listing is
            # looked up on its own, or the zone is listed again when many are (at most every few seconds).
            listing: dict[str, bool] | None = None
            listed_now = False
            cached = self._zones.get((project, zone))
            if cached is not None and now - cached[0] < self.zone_list_ttl:
                missing = sum(1 for _, name in members if name not in cached[1])
                if missing < max(threshold, 1) or now - cached[0] < ZONE_RELIST_SECONDS:
                    listing = cached[1]
            if listing is None:
                if not threshold or len(members) < threshold or self._list_denied:
                    singles += [n for n, _ in members]
                    continue
                try:
                    listing = self._list_zone(project, zone)
                    listed_now = True
                    self._zones[(project, zone)] = (time.monotonic(), listing)
                except gexc.Forbidden:
                    self._list_denied = True  # no compute.instances.list: one GET per node still works
                    singles += [n for n, _ in members]
                    continue
                except gexc.GoogleAPICallError as e:
                    for n, _ in members:
                        out[n.name] = NodeProblem(REASON_CLOUD_ERROR,
                                                  f"listing instances of {project}/{zone}: {e.message}")
                    continue
            for n, name in members:
                if name not in listing and not listed_now:
                    singles.append(n)  # created after the listing we read
                    continue
                try:
                    out[n.name] = self._check_instance(n, project, zone, name, listing.get(name))
                except NodeProblem as p:
                    out[n.name] = p

        def one(n: NodeRoutes) -> str | NodeProblem:
            try:
                return self.resolve(n)
            except NodeProblem as p:
                return p
            except CloudError as e:
                return NodeProblem(REASON_CLOUD_ERROR, str(e))

        if singles:
            with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
                out.update(zip([n.name for n in singles], pool.map(one, singles), strict=True))
        return out

    def _insert(self, name: str, destination: str, target: str) -> None:
        compute = compute_types()
        route = compute.Route(
            name=name, network=self.network_path, dest_range=destination, next_hop_instance=target,
            priority=self.priority, description=self.description, tags=self.tags,
        )
        sent = [0.0]  # when the (last) insert was sent: after its token, so a rate wait is not counted

        def insert() -> Any:
            sent[0] = time.monotonic()
            return self._client("routes").insert_unary(
                project=self.project, route_resource=route, retry=None, timeout=self.call_timeout)

        op = self._call("routes.insert", insert, mutating=True)
        self._wait(op, f"inserting route {name}")
        advice = self.op_latency.observe(time.monotonic() - sent[0])  # the slot is held all this time
        if advice:
            log.warning("%s", advice)

    def create(self, table: str, destination: str, target: str, node: NodeRoutes) -> CloudRoute:
        """Insert our route; 409 with the same destination and next hop is success, otherwise replaced."""
        name = self.route_name(node, destination)
        mine = CloudRoute(self.network, canonical_cidr(destination), target, name=name, owned=True,
                          node=node.name)
        try:
            self._insert(name, destination, target)
            return mine
        except gexc.Conflict:
            pass
        except gexc.Forbidden as e:
            if _reason(e) == "QUOTA_EXCEEDED":
                raise self._limit_error(f"inserting route {name}", e.message) from e
            raise CloudError(f"inserting route {name}: {e.message}") from e
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"inserting route {name}: {e.message}") from e
        existing = self._get(name)
        if existing is None:  # deleted meanwhile: try once more
            self._insert(name, destination, target)
            return mine
        if not existing.owned:
            raise CloudError(f"route name {name} is taken by a route routectl does not own; not touching it")
        if existing.destination == canonical_cidr(destination) and existing.target == target:
            return mine
        return self.replace(existing, target, node, destination=destination)

    def _get(self, name: str) -> CloudRoute | None:
        try:
            r = self._call("routes.get", lambda: self._client("routes").get(
                project=self.project, route=name, retry=None, timeout=self.call_timeout))
        except gexc.NotFound:
            return None
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"getting route {name}: {e.message}") from e
        compute = compute_types()

        return self._to_cloud_route(compute.Route.pb(r))

    def replace(self, route: CloudRoute, target: str, node: NodeRoutes, *,
                destination: str | None = None) -> CloudRoute:
        """GCE routes are immutable: delete the owned route, then insert the node's route."""
        self.delete(route)
        dest = destination or route.destination
        name = self.route_name(node, dest)
        try:
            self._insert(name, dest, target)
        except gexc.Forbidden as e:
            if _reason(e) == "QUOTA_EXCEEDED":
                raise self._limit_error(f"re-inserting route for {dest}", e.message) from e
            raise CloudError(f"re-inserting route for {dest}: {e.message}") from e
        except gexc.Conflict:
            existing = self._get(name)
            if existing is None or not existing.owned or existing.target != target:
                raise CloudError(f"re-inserting route {name}: name taken meanwhile") from None
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"re-inserting route for {dest}: {e.message}") from e
        return CloudRoute(self.network, canonical_cidr(dest), target, name=name, owned=True, node=node.name)

    def delete(self, route: CloudRoute) -> None:
        """Delete an owned route by name; already gone is success."""
        if not route.owned or not route.name:
            raise CloudError(f"refusing to delete route {route.name or route.destination}: "
                             "not owned by routectl")
        try:
            op = self._call("routes.delete", lambda: self._client("routes").delete_unary(
                project=self.project, route=route.name, retry=None, timeout=self.call_timeout), mutating=True)
        except gexc.NotFound:
            return
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"deleting route {route.name}: {e.message}") from e
        self._wait(op, f"deleting route {route.name}")

    def _static_routes_limit(self) -> tuple[int | None, str]:
        """STATIC_ROUTES_PER_NETWORK for our network from the Cloud Quotas API, cached `quota_ttl`:
        (limit or None, note saying why it is unknown). The quota is read by id; if the id is unknown,
        the service's QuotaInfos are searched by metric. Of its dimension entries, the one for our network
        (network_id) or, without one, the smallest applies."""
        now = self.clock()
        if self._static_quota and now < self._static_quota[0] + self._ttl():
            return self._static_quota[1], self._static_quota[2]
        parent = f"projects/{self.project}/locations/global/services/{QUOTAS_SERVICE}"
        net_id = self._network_numeric_id()
        client = self._client("quotas")
        info: Any = None
        note = ""
        try:
            try:
                info = self._call("cloudquotas.quotaInfos.get", lambda: client.get_quota_info(
                    name=f"{parent}/quotaInfos/{self.static_routes_quota_id}", retry=None,
                    timeout=self.call_timeout))
            except gexc.NotFound:
                pages = self._call("cloudquotas.quotaInfos.list", lambda: list(client.list_quota_infos(
                    parent=parent, retry=None, timeout=self.call_timeout)))
                info = next((q for q in pages if q.metric == STATIC_ROUTES_METRIC), None)
                if info is not None:
                    self.static_routes_quota_id = info.quota_id
        except gexc.GoogleAPICallError as e:
            why = f"permission {QUOTAS_PERMISSION} is missing" if isinstance(e, gexc.Forbidden) else "failed"
            note = (f"STATIC_ROUTES_PER_NETWORK could not be read through the Cloud Quotas API ({why}: "
                    f"{e.message})")
        limit: int | None = None
        if info is not None:
            values = [(dict(d.dimensions), int(d.details.value)) for d in info.dimensions_infos
                      if d.details and d.details.value >= 0]
            ours = [v for dims, v in values if net_id is not None and dims.get("network_id") == net_id]
            default = [v for dims, v in values if "network_id" not in dims]
            # our network's own value, else the default; the smallest of all only when neither is known
            pick = ours or default or [v for _, v in values]
            limit = min(pick) if pick else None
        elif not note:
            note = "STATIC_ROUTES_PER_NETWORK is not reported by the Cloud Quotas API"
        self._static_quota = (now, limit, note)
        return limit, note

    def _ttl(self) -> float:
        """How long a quota read (or learned limit) stays good: `quota_ttl`, cut to `quota_full_ttl` while
        the quota was full at the last capacity(), so a raised quota is seen within minutes."""
        return min(self.quota_ttl, self.quota_full_ttl) if self._full else self.quota_ttl

    def _network_numeric_id(self) -> str | None:
        """Our network's numeric id (per-network quota values are keyed by it); None when unreadable."""
        if self._network_id is None:
            try:
                net = self._call("networks.get", lambda: self._client("networks").get(
                    project=self.project, network=self.network, retry=None, timeout=self.call_timeout))
            except gexc.GoogleAPICallError:
                return None
            self._network_id = str(net.id)
        return self._network_id

    def learn_limit(self, message: str) -> tuple[int | None, str]:
        """An insert was refused with QUOTA_EXCEEDED: the network's static-route count now is the limit of
        the quota the message names. Remembered for `quota_ttl`; returns (limit or None, quota name)."""
        m = QUOTA_NAME_RE.search(message)
        quota = m.group(1) if m else "STATIC_ROUTES_PER_NETWORK"
        try:
            count = len(self.list_routes())
        except CloudError:
            return None, quota
        self._learned = (self.clock(), count, quota)
        return count, quota

    def capacity(self, routes: list[CloudRoute]) -> list[TableCapacity]:
        """The binding route quota of our network: STATIC_ROUTES_PER_NETWORK (used = every static route of
        the network, ours or not, both families) and the project's ROUTES where still reported; the one
        with the least room binds. A limit learned from QUOTA_EXCEEDED counts as known too."""
        try:
            proj = self._call("projects.get", lambda: self._client("projects").get(
                project=self.project, retry=None, timeout=self.call_timeout))
        except gexc.GoogleAPICallError as e:
            raise CloudError(f"reading quotas of project {self.project}: {e.message}") from e
        static, note = self._static_routes_limit()
        how = "request more under IAM & Admin > Quotas & System Limits (Compute Engine API)"
        known: list[TableCapacity] = []
        if static is not None:
            known.append(TableCapacity(
                table=self.network, used=len(routes), limit=static,
                quota_name=f"the Compute Engine quota STATIC_ROUTES_PER_NETWORK of network {self.network}",
                raise_to_hint=f"{how}, or with 'gcloud beta quotas preferences create --service="
                              f"{QUOTAS_SERVICE} --quota-id={self.static_routes_quota_id} "
                              f"--dimensions=network_id=<id of {self.network}>'",
                provider=self.provider, note=note))
        for q in proj.quotas:
            if q.metric == "ROUTES":
                known.append(TableCapacity(
                    table=self.network, used=int(q.usage), limit=int(q.limit),
                    quota_name=f"the deprecated Compute Engine quota ROUTES of project {self.project}",
                    raise_to_hint=f"{how}; static routes now also count against STATIC_ROUTES_PER_NETWORK",
                    provider=self.provider, note=note))
        if self._learned and self.clock() < self._learned[0] + self._ttl():
            _, limit, quota = self._learned
            if not known or all(limit < c.limit for c in known):
                known.append(TableCapacity(
                    table=self.network, used=len(routes), limit=limit,
                    quota_name=f"the Compute Engine quota {quota} of network {self.network}",
                    raise_to_hint=how, provider=self.provider, source="learned",
                    note=f"limit learned from GCE (QUOTA_EXCEEDED for {quota} at {limit} routes)"
                         + (f"; {note}" if note else "")))
        if not known:
            self._full = False
            return [TableCapacity(
                table=self.network, used=len(routes), limit=UNKNOWN_LIMIT,
                quota_name=f"the Compute Engine quota STATIC_ROUTES_PER_NETWORK of network {self.network}",
                raise_to_hint=how, provider=self.provider, source="assumed",
                note=f"{note}; inserts are attempted and the first QUOTA_EXCEEDED sets the limit")]
        binding = min(known, key=lambda c: (c.limit - c.used, c.limit))
        self._full = binding.used >= binding.limit
        return [binding]
