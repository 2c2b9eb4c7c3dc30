"""AWS route driver on boto3: every node route goes into each of the cluster's route tables (one per AZ).

Tables are found by tag `kubernetes.io/cluster/<id>` (owned|shared) or configured IDs. Routes target the
instance's primary ENI (an InstanceId target fails for multi-ENI instances). Ownership: one of our tables
AND a destination that is exactly one node block of a pool (aligned, of the pool's node mask for that
family) AND an ENI/instance target or a blackhole. Anything else (a /20 to a VPN appliance inside a /8
pool, gateway, NAT, TGW, peering routes) is never ours and survives every operation.

Route limit: the Service Quotas value vpc/L-93826ACB "Routes per route table" (default 500 since
2025-06-23, adjustable to 1,000), applied to IPv4 and IPv6 routes separately: two capacities per table.
When the quota cannot be read, nothing is refused blindly: routes are attempted up to the adjustable
maximum and EC2's RouteLimitExceeded is the authoritative signal (the table's count of that family at that
moment is its limit, remembered for `quota_ttl` and reported as "limit learned from EC2").
Every Describe call follows NextToken (EC2 and moto page DescribeInstances even when IDs are given).
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from routectl.cloud.base import (
    REASON_INSTANCE_NOT_FOUND,
    REASON_INVALID_PROVIDER_ID,
    REASON_PREREQUISITE_FAILED,
    CallCounter,
    CloudError,
    NodeProblem,
    RouteLimitError,
)
from routectl.cloud.caller import CloudCaller, UsesCloudCaller
from routectl.cloud.ratelimit import TokenBucket
from routectl.cloud.retry import classify
from routectl.constants import DEFAULT_IPV4_MASK, DEFAULT_IPV6_MASK
from routectl.routes.model import (
    CloudRoute,
    Family,
    NodeRoutes,
    TableCapacity,
    canonical_cidr,
    family_of,
    parse_pools,
)

PROVIDER_ID_RE = re.compile(r"^aws://[^/]*/(?:([a-z]{2}(?:-[a-z]+)+-\d[a-z]?(?:-[a-z0-9-]+)?)/)?(i-[0-9a-f]{8,17})$")
ROUTE_QUOTA = ("vpc", "L-93826ACB")
# The most a table can be raised to: the bound routes are attempted up to while the quota is unreadable.
MAX_ROUTE_LIMIT = 1000
QUOTA_DENIED_CODES = ("AccessDenied", "NoSuchResource")  # the quota cannot be read: learn it from EC2
QUOTA_PERMISSION = "servicequotas:GetServiceQuota"
# While a table is full (nodes refused for the limit wait, or ride the overlay), Service Quotas is re-read
# every 5 minutes instead of every hour: a raised quota then gives those nodes routes within minutes. One
# GetServiceQuota per controller per 5 min (288 a day) is far below Service Quotas' request budget, and a
# quota increase itself takes minutes to be granted, so a shorter period would gain little.
QUOTA_FULL_TTL = 300.0
FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
# Default rates: EC2's mutating bucket (CreateRoute/ReplaceRoute/DeleteRoute) holds 50 and refills 5/s per
# account and region, ModifyNetworkInterfaceAttribute 100 / 5/s. Stay below both, leaving room for the
# account's other tools.
DEFAULT_RATE = 4.0
DEFAULT_BURST = 40
TARGET_KEYS = ("NetworkInterfaceId", "InstanceId", "GatewayId", "NatGatewayId", "TransitGatewayId",
               "VpcPeeringConnectionId", "EgressOnlyInternetGatewayId", "CarrierGatewayId", "LocalGatewayId")
DESCRIBE_BATCH = 200  # instance ids per DescribeInstances request (its pages are followed)


def parse_provider_id(provider_id: str | None) -> tuple[str | None, str]:
    """(zone or None, instance id) from `aws:///<zone>/<instance-id>`; NodeProblem when malformed."""
    if not provider_id:
        raise NodeProblem(REASON_INVALID_PROVIDER_ID,
                          "node has no spec.providerID (is the AWS cloud provider set up?)")
    m = PROVIDER_ID_RE.match(provider_id)
    if not m:
        raise NodeProblem(REASON_INVALID_PROVIDER_ID,
                          f"providerID {provider_id!r} is not of the form aws:///<zone>/<instance-id>")
    return m.group(1), m.group(2)


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class AWSRouteDriver(UsesCloudCaller):
    """Routes of one cluster in its AWS route tables (see module docstring)."""

    provider = "aws"

    def __init__(
        self,
        cluster_id: str,
        region: str,
        *,
        route_table_ids: Sequence[str] = (),
        cluster_cidrs: Sequence[str],
        fix_source_dest_check: bool = True,
        endpoint_url: str | None = None,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        concurrency: int = 16,
        session: boto3.Session | None = None,
        quota_ttl: float = 3600.0,
        quota_retry_ttl: float = 60.0,
        quota_full_ttl: float = QUOTA_FULL_TTL,
        node_masks: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not cluster_id and not route_table_ids:
            raise ValueError("AWS driver needs a cluster_id (tag kubernetes.io/cluster/<id>) "
                             "or route_table_ids")
        if not cluster_cidrs:
            raise ValueError("AWS driver needs the cluster CIDRs (ownership = destination inside our pools)")
        self.cluster_id = cluster_id
        self.region = region
        self.configured_tables = list(route_table_ids)
        self.pools = parse_pools(list(cluster_cidrs))
        self.node_masks = dict(node_masks or {})
        self.fix_source_dest_check = fix_source_dest_check
        self.calls = CallCounter()
        self.caller = CloudCaller(self.calls, TokenBucket(rate, burst), concurrency,
                                  (ClientError, BotoCoreError))
        self.quota_ttl = quota_ttl
        self.quota_retry_ttl = quota_retry_ttl
        self.quota_full_ttl = quota_full_ttl
        self.clock = clock
        self.quota_note = ""
        self._quota: tuple[float, float, int | None] | None = None  # (read at, ttl, value; None = unreadable)
        self._full = False  # a table (family) was at its limit at the last capacity(): nodes may wait
        self._last_quota: int | None = None  # the last value Service Quotas answered
        self._learned: dict[tuple[str, str], tuple[float, int]] = {}  # (table, family) -> (expires, limit)
        self._learn_lock = threading.Lock()
        self._tables: list[str] | None = None
        cfg = Config(retries={"total_max_attempts": 1}, max_pool_connections=concurrency + 4,
                     connect_timeout=10, read_timeout=60)
        if session is None:
            session = boto3.Session(region_name=region)
            if endpoint_url and session.get_credentials() is None:  # local emulator: any key works
                session = boto3.Session(region_name=region, aws_access_key_id="testing",
                                        aws_secret_access_key="testing")
        self.ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url, config=cfg)
        self.quotas = session.client("service-quotas", region_name=region, endpoint_url=endpoint_url,
                                     config=cfg)

    # ----- plumbing -----
    def mask_of(self, pool: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
        """The node mask of a pool (its PodCIDRPool's nodeMaskSize, else the CRD's default)."""
        default = DEFAULT_IPV4_MASK if pool.version == 4 else DEFAULT_IPV6_MASK
        return self.node_masks.get(str(pool), default)

    def is_node_block(self, dest: str) -> bool:
        """True when `dest` is exactly one aligned node block of one of our pools (its family's mask)."""
        try:
            net = ipaddress.ip_network(dest, strict=True)
        except ValueError:
            return False
        return any(net.version == p.version and net.subnet_of(p)  # type: ignore[arg-type]
                   and net.prefixlen == self.mask_of(p) for p in self.pools)

    def _owned(self, r: dict[str, Any], dest: str) -> bool:
        if r.get("Origin") == "CreateRouteTable" or r.get("GatewayId") == "local":
            return False
        if not self.is_node_block(dest):
            return False
        if any(r.get(k) for k in TARGET_KEYS if k not in ("NetworkInterfaceId", "InstanceId")):
            return False
        return bool(r.get("NetworkInterfaceId") or r.get("InstanceId") or r.get("State") == "blackhole")

    def _to_route(self, table: str, r: dict[str, Any]) -> CloudRoute | None:
        dest = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
        if not dest:  # prefix-list routes: never ours, still counted by capacity via the raw count
            return CloudRoute(table=table, destination=r.get("DestinationPrefixListId", "?"), target=None,
                              state=r.get("State", "active"), owned=False)
        target = next((r[k] for k in TARGET_KEYS if r.get(k)), None)
        dest = canonical_cidr(dest)
        return CloudRoute(table=table, destination=dest, target=target, state=r.get("State", "active"),
                          owned=self._owned(r, dest))

    def _pages(self, op: str, method: Callable[..., dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a Describe call, following NextToken; each page is one retried call (a botocore
        paginator cannot resume after a failed page, so the token loop is ours)."""
        pages: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page_kwargs = dict(kwargs, **({"NextToken": token} if token else {}))
            resp = self._call(op, lambda kw=page_kwargs: method(**kw))
            pages.append(resp)
            token = resp.get("NextToken")
            if not token:
                return pages

    def _describe_tables(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if self.configured_tables:
            kwargs["RouteTableIds"] = self.configured_tables
        else:
            kwargs["Filters"] = [{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{self.cluster_id}"]}]
        try:
            pages = self._pages("ec2:DescribeRouteTables", self.ec2.describe_route_tables, **kwargs)
        except ClientError as e:
            raise CloudError(f"describing route tables: {_code(e)}: {e}") from e
        out = [t for page in pages for t in page.get("RouteTables", [])]
        if not self.configured_tables:
            key = f"kubernetes.io/cluster/{self.cluster_id}"
            out = [t for t in out if any(tag["Key"] == key and tag.get("Value") in ("owned", "shared")
                                         for tag in t.get("Tags", []))]
        return sorted(out, key=lambda t: t["RouteTableId"])

    # ----- protocol -----
    def list_tables(self) -> list[str]:
        """Our route table IDs (configured, else tagged owned|shared); cached after the first list."""
        if self._tables is None:
            if self.configured_tables:
                self._tables = list(self.configured_tables)
            else:
                self._tables = [t["RouteTableId"] for t in self._describe_tables()]
        return list(self._tables)

    def list_routes(self) -> list[CloudRoute]:
        """Every route of every table of ours (one paginated DescribeRouteTables), ownership marked."""
        tables = self._describe_tables()
        self._tables = [t["RouteTableId"] for t in tables]
        out: list[CloudRoute] = []
        for t in tables:
            for r in t.get("Routes", []):
                route = self._to_route(t["RouteTableId"], r)
                if route is not None:
                    out.append(route)
        return out

    def _describe_instances(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        pages = self._pages("ec2:DescribeInstances", self.ec2.describe_instances, InstanceIds=ids)
        return {i["InstanceId"]: i for resp in pages for res in resp.get("Reservations", [])
                for i in res.get("Instances", [])}

    def _target_of(self, node: NodeRoutes, iid: str, inst: dict[str, Any] | None,
                   check_only: bool = False) -> str:
        if inst is None or inst.get("State", {}).get("Name") in ("terminated", "shutting-down"):
            raise NodeProblem(REASON_INSTANCE_NOT_FOUND,
                              f"instance {iid} (providerID {node.provider_id}) not found or terminated")
        primary = next((n for n in inst.get("NetworkInterfaces", [])
                        if n.get("Attachment", {}).get("DeviceIndex") == 0), None)
        if primary is None:
            raise NodeProblem(REASON_PREREQUISITE_FAILED, f"instance {iid} has no primary network interface")
        eni = primary["NetworkInterfaceId"]
        if primary.get("SourceDestCheck", inst.get("SourceDestCheck", True)):
            if check_only or not self.fix_source_dest_check:
                fix = ("sync will disable it" if self.fix_source_dest_check and check_only
                       else "disable it, or let routectl do it (fix_source_dest_check)")
                raise NodeProblem(REASON_PREREQUISITE_FAILED,
                                  f"source/destination check is enabled on {eni} of instance {iid}: the VPC "
                                  f"drops pod traffic; {fix}")
            try:
                self._call("ec2:ModifyNetworkInterfaceAttribute",
                           lambda: self.ec2.modify_network_interface_attribute(
                               NetworkInterfaceId=eni, SourceDestCheck={"Value": False}), mutating=True)
            except ClientError as e:
                raise NodeProblem(REASON_PREREQUISITE_FAILED,
                                  f"could not disable source/destination check on {eni}: {_code(e)}") from e
        return eni

    def resolve(self, node: NodeRoutes, *, check_only: bool = False) -> str:
        """The node's primary ENI id; disables (check_only/report mode: reports) the source/dest check."""
        _, iid = parse_provider_id(node.provider_id)
        try:
            found = self._describe_instances([iid])
        except ClientError as e:
            if _code(e).startswith("InvalidInstanceID.NotFound"):
                raise NodeProblem(REASON_INSTANCE_NOT_FOUND,
                                  f"instance {iid} (providerID {node.provider_id}) not found") from e
            if _code(e) == "InvalidInstanceID.Malformed":
                raise NodeProblem(REASON_INVALID_PROVIDER_ID,
                                  f"malformed instance id in {node.provider_id}") from e
            raise CloudError(f"describing instance {iid}: {_code(e)}") from e
        return self._target_of(node, iid, found.get(iid), check_only)

    def resolve_many(self, nodes: Sequence[NodeRoutes], *,
                     check_only: bool = False) -> dict[str, str | NodeProblem]:
        """Resolve many nodes with batched DescribeInstances (falls back per node when a batch fails)."""
        out: dict[str, str | NodeProblem] = {}
        ids: dict[str, NodeRoutes] = {}
        for n in nodes:
            try:
                ids[parse_provider_id(n.provider_id)[1]] = n
            except NodeProblem as p:
                out[n.name] = p
        keys = list(ids)
        for i in range(0, len(keys), DESCRIBE_BATCH):
            batch = keys[i:i + DESCRIBE_BATCH]
            try:
                found = self._describe_instances(batch)
            except ClientError as e:
                if classify(e) is not None:
                    raise CloudError(f"describing instances: {_code(e)}") from e
                for iid in batch:  # one bad id fails the whole call on EC2: go one by one
                    try:
                        out[ids[iid].name] = self.resolve(ids[iid], check_only=check_only)
                    except NodeProblem as p:
                        out[ids[iid].name] = p
                continue
            for iid in batch:
                try:
                    out[ids[iid].name] = self._target_of(ids[iid], iid, found.get(iid), check_only)
                except NodeProblem as p:
                    out[ids[iid].name] = p
        return out

    def _dest_kwargs(self, destination: str) -> dict[str, str]:
        dest = canonical_cidr(destination)
        return {"DestinationIpv6CidrBlock": dest} if ":" in dest else {"DestinationCidrBlock": dest}

    def _table_routes(self, table: str) -> list[CloudRoute]:
        """Every route of one table (all pages)."""
        try:
            pages = self._pages("ec2:DescribeRouteTables", self.ec2.describe_route_tables,
                                RouteTableIds=[table])
        except ClientError as e:
            raise CloudError(f"describing route table {table}: {_code(e)}") from e
        return [route for page in pages for t in page.get("RouteTables", []) for r in t.get("Routes", [])
                if (route := self._to_route(table, r)) is not None]

    def _find(self, table: str, destination: str) -> CloudRoute | None:
        want = canonical_cidr(destination)
        return next((r for r in self._table_routes(table) if r.destination == want), None)

    def _learn_limit(self, table: str, destination: str) -> tuple[str, int | None]:
        """EC2 refused a route with RouteLimitExceeded: the table's count of that family now is its limit.
        Remembered like a quota read (`quota_ttl`, cut while a table is full); returns (family, limit or None
        when the table could not be read)."""
        family = family_of(canonical_cidr(destination))
        try:
            count = sum(1 for r in self._table_routes(table) if family_of(r.destination) == family)
        except CloudError:
            return family, None
        with self._learn_lock:
            self._learned[(table, family)] = (self.clock(), count)  # (learned at, limit)
        return family, count

    def learned_limit(self, table: str, family: str) -> int | None:
        """The limit EC2's RouteLimitExceeded taught for this table and family (None: none, or expired)."""
        with self._learn_lock:
            got = self._learned.get((table, family))
        return got[1] if got and self.clock() < got[0] + self._ttl(self.quota_ttl) else None

    def create(self, table: str, destination: str, target: str, node: NodeRoutes) -> CloudRoute:
        """CreateRoute to the ENI; RouteAlreadyExists with another target -> ReplaceRoute (if ours)."""
        kw = self._dest_kwargs(destination)
        route = CloudRoute(table, canonical_cidr(destination), target, owned=True, node=node.name)
        for _ in range(2):  # RouteAlreadyExists but not listed (deleted meanwhile): try once more
            try:
                self._call("ec2:CreateRoute", lambda: self.ec2.create_route(
                    RouteTableId=table, NetworkInterfaceId=target, **kw), mutating=True)
                return route
            except ClientError as e:
                code = _code(e)
                if code == "RouteLimitExceeded":
                    family, limit = self._learn_limit(table, destination)
                    at = f" at {limit} {family} routes (limit learned from EC2)" if limit is not None else ""
                    raise RouteLimitError(f"route table {table} is full{at}: {e}", family=family,
                                          limit=limit) from e
                if code != "RouteAlreadyExists":
                    raise CloudError(f"creating route {destination} in {table}: {code}: {e}") from e
            existing = self._find(table, destination)
            if existing is not None:
                break
        else:
            raise CloudError(f"creating route {destination} in {table}: EC2 answers RouteAlreadyExists but "
                             "does not list the route (twice); giving up until the next sync")
        if existing.target == target and existing.state == "active":
            return route
        if not existing.owned:
            raise CloudError(f"{destination} in {table} is taken by a route routectl does not own "
                             f"(target {existing.target}); not touching it")
        return self.replace(existing, target, node)

    def replace(self, route: CloudRoute, target: str, node: NodeRoutes) -> CloudRoute:
        """ReplaceRoute of an owned route to the node's ENI (also repairs blackholes)."""
        if not route.owned:
            raise CloudError(f"refusing to replace route {route.destination} in {route.table}: not owned")
        try:
            self._call("ec2:ReplaceRoute", lambda: self.ec2.replace_route(
                RouteTableId=route.table, NetworkInterfaceId=target, **self._dest_kwargs(route.destination)),
                mutating=True)
        except ClientError as e:
            raise CloudError(f"replacing route {route.destination} in {route.table}: {_code(e)}: {e}") from e
        return CloudRoute(route.table, route.destination, target, owned=True, node=node.name)

    def delete(self, route: CloudRoute) -> None:
        """DeleteRoute of an owned route; already gone is success."""
        if not route.owned:
            raise CloudError(f"refusing to delete route {route.destination} in {route.table}: not owned")
        try:
            self._call("ec2:DeleteRoute", lambda: self.ec2.delete_route(
                RouteTableId=route.table, **self._dest_kwargs(route.destination)), mutating=True)
        except ClientError as e:
            if _code(e) == "InvalidRoute.NotFound":
                return
            raise CloudError(f"deleting route {route.destination} in {route.table}: {_code(e)}: {e}") from e

    def route_limit(self) -> int | None:
        """Routes per route table (each family) from Service Quotas, cached for `quota_ttl` (1 h), or for
        `quota_full_ttl` (5 min) while a table was full at the last `capacity()`.

        None when the quota cannot be read (AccessDenied / NoSuchResource, or a failure before any value
        was read): then nothing is refused on a guess; EC2's RouteLimitExceeded teaches the limit. Any
        other failure after a successful read keeps the last value read. A fallback is cached at most
        `quota_retry_ttl` (60 s), so a brief outage does not pin a wrong answer for an hour.
        """
        now = self.clock()
        if self._quota and now < self._quota[0] + self._ttl(self._quota[1]):
            return self._quota[2]
        try:
            resp = self._call("servicequotas:GetServiceQuota", lambda: self.quotas.get_service_quota(
                ServiceCode=ROUTE_QUOTA[0], QuotaCode=ROUTE_QUOTA[1]))
            value: int | None = int(resp["Quota"]["Value"])
        except (ClientError, BotoCoreError) as e:
            code = _code(e) if isinstance(e, ClientError) else type(e).__name__
            if code.startswith(QUOTA_DENIED_CODES) or self._last_quota is None:
                value = None
                missing = (f"permission {QUOTA_PERMISSION} is missing" if code.startswith("AccessDenied")
                           else f"{QUOTA_PERMISSION} failed")
                self.quota_note = (f"the quota 'Routes per route table' could not be read ({missing}: "
                                   f"{code}); routes are attempted and EC2's RouteLimitExceeded "
                                   "sets the limit")
            else:
                value = self._last_quota
                self.quota_note = f"GetServiceQuota failed ({code}); keeping the last value read ({value})"
            self._quota = (now, min(self.quota_ttl, self.quota_retry_ttl), value)
            return value
        self.quota_note = ""
        self._last_quota = value
        self._quota = (now, self.quota_ttl, value)
        return value

    def _ttl(self, ttl: float) -> float:
        """How long a quota read stays good: its own TTL, cut to `quota_full_ttl` while a table is full
        (nodes wait for room, or ride the overlay), so a raised quota is seen within minutes."""
        return min(ttl, self.quota_full_ttl) if self._full else ttl

    def capacity(self, routes: list[CloudRoute]) -> list[TableCapacity]:
        """Two capacities per table, IPv4 and IPv6 (EC2 counts them separately): used = every route of
        that family in it (local, IGW/NAT, foreign, ours); limit = the smallest known of the quota and
        what EC2 taught; with neither, the adjustable maximum (assumed, routes are attempted)."""
        quota = self.route_limit()
        used = Counter((r.table, family_of(r.destination)) for r in routes)
        name = "the Service Quotas value vpc/L-93826ACB 'Routes per route table'"
        out: list[TableCapacity] = []
        for t in self.list_tables():
            for family in FAMILIES:
                learned = self.learned_limit(t, family)
                known = [v for v in (quota, learned) if v is not None]
                limit = min(known) if known else MAX_ROUTE_LIMIT
                if learned is not None and learned == limit and (quota is None or learned < quota):
                    source = "learned"
                    note = f"limit learned from EC2 (RouteLimitExceeded at {learned} routes)"
                    if self.quota_note:
                        note += f"; {self.quota_note}"
                elif quota is None:
                    source, note = "assumed", self.quota_note
                else:
                    source, note = "quota", self.quota_note
                hint = "adjustable up to 1,000 per family; AWS warns performance may suffer past the default"
                out.append(TableCapacity(table=t, used=used[(t, family)], limit=limit, quota_name=name,
                                         raise_to_hint=hint, provider=self.provider, family=family,
                                         source=source, note=note))  # type: ignore[arg-type]
        self._full = any(c.used >= c.limit for c in out)
        return out
