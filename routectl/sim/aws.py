"""moto wiring for the AWS side of the simulation: a threaded moto server on 127.0.0.1 with EC2's limits.

Moto has no route limit, no throttling and no blackhole routes, so a small WSGI middleware in front of
the moto app adds them SERVER-SIDE (every client, in any process, sees them):
- CreateRoute to a destination the table already has answers `RouteAlreadyExists` whatever the target
  (moto itself overwrites silently when the target is an ENI);
- CreateRoute past the table's quota answers `RouteLimitExceeded` (HTTP 400), as EC2 does, counting IPv4
  and IPv6 routes separately (the quota applies to each family); the quota is also what service-quotas
  GetServiceQuota(vpc, L-93826ACB) answers (configurable, default 500 as on EC2 since 2025-06-23);
- mutating EC2 calls draw from an EC2-like token bucket (burst B, refill r/s): empty -> HTTP 503
  `RequestLimitExceeded`; count-based or random faults (routectl.sim.faults) answer throttled, 500
  `InternalError`, or apply the change and then answer 500 (the client's retry meets RouteAlreadyExists);
- blackholes: moto's Route.state is patched (in this process) to be computed like EC2 does it: a route
  whose target ENI is gone or whose instance is terminated is `blackhole`; `blackhole()` forces one.
Every request is logged under its IAM action name (ec2:CreateRoute, servicequotas:GetServiceQuota, ...).
One MotoAWS per process at a time: start() resets moto's global state.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs

import boto3

from routectl.cloud.ratelimit import TokenBucket
from routectl.sim.faults import ERROR, ERROR_AFTER_APPLY, THROTTLE, FaultPlan, InjectsFaults
from routectl.sim.serving import ServedFake

ROUTE_QUOTA_CODE = "L-93826ACB"
MUTATING_PREFIXES = ("Create", "Delete", "Replace", "Modify", "Associate", "Disassociate", "Run", "Terminate",
                     "Attach", "Detach")
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_SERVICE_RE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
_forced_blackholes: set[tuple[str, str]] = set()  # (route table id, destination) until ReplaceRoute
_patched = False


def subnet_plan(vpc_cidr: str, azs: int, nodes: int) -> list[str]:
    """One subnet per AZ, each large enough for its share of `nodes` instances with a spare ENI each and
    room to grow (x2), carved from the VPC CIDR; ValueError when the VPC cannot hold them."""
    vpc = ipaddress.ip_network(vpc_cidr)
    per_az = -(-max(nodes, 1) // max(azs, 1))
    hosts = 4 * per_az + 8  # x2 ENIs (tests attach a spare one), x2 headroom, AWS reserves 5 addresses
    prefix = min(28, vpc.max_prefixlen - max(4, (hosts - 1).bit_length()))
    if prefix < vpc.prefixlen or 2 ** (prefix - vpc.prefixlen) < azs:
        raise ValueError(f"VPC {vpc_cidr} cannot hold {azs} subnet(s) for {nodes} nodes; "
                         "give a larger vpc_cidr")
    return [str(s) for s in itertools.islice(vpc.subnets(new_prefix=prefix), azs)]


def _route_target_id(route: Any) -> str | None:
    if getattr(route, "interface", None) is not None:
        return route.interface.id
    if getattr(route, "instance", None) is not None:
        return route.instance.id
    return None


def _computed_state(route: Any) -> str:
    """EC2 semantics: blackhole when the target ENI was deleted or the target instance terminated."""
    dest = route.destination_cidr_block or route.destination_ipv6_cidr_block
    if (route.route_table.id, dest) in _forced_blackholes:
        return "blackhole"
    backend = route.route_table.ec2_backend
    eni = getattr(route, "interface", None)
    if eni is not None:
        if eni.id not in backend.enis:
            return "blackhole"
        inst = getattr(eni, "instance", None)
        if inst is not None and inst._state.name in ("terminated", "stopped"):
            return "blackhole"
    inst = getattr(route, "instance", None)
    if inst is not None and inst._state.name in ("terminated", "stopped"):
        return "blackhole"
    return "active"


def _patch_moto_route_state() -> None:
    global _patched
    if not _patched:
        from moto.ec2.models.route_tables import Route

        Route.state = property(_computed_state)  # type: ignore[method-assign,assignment]
        _patched = True


class _Middleware:
    """WSGI wrapper adding EC2's route limit, throttling, injected errors and the IAM call log."""

    def __init__(self, app: Callable[..., Any], sim: MotoAWS) -> None:
        self.app = app
        self.sim = sim

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        m = _SERVICE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = m.group(1) if m else ""
        sim = self.sim
        if service == "ec2":
            params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            action = params.get("Action", "")
            sim._log(f"ec2:{action}")
            if sim.latency:
                time.sleep(sim.latency)
            mutating = action.startswith(MUTATING_PREFIXES)
            if mutating and sim.bucket is not None and not sim.bucket.try_acquire():
                with sim._lock:
                    sim.throttled += 1
                return _ec2_error(start_response, 503, "RequestLimitExceeded", "Request limit exceeded.")
            fault = sim.faults.decide(f"ec2 {body.decode('utf-8', 'replace')}", mutating)
            if fault == THROTTLE:
                with sim._lock:
                    sim.throttled += 1
                return _ec2_error(start_response, 503, "RequestLimitExceeded", "Request limit exceeded.")
            if fault in (ERROR, ERROR_AFTER_APPLY):
                with sim._lock:
                    sim.injected_errors += 1
            if fault == ERROR:
                return _ec2_error(start_response, 500, "InternalError",
                                  "An internal error has occurred (injected).")
            app = self._apply_then_fail if fault == ERROR_AFTER_APPLY else self.app
            if action == "CreateRoute":
                with sim._create_lock:  # count + create atomically, as the real limit is
                    table = params.get("RouteTableId", "")
                    dest = params.get("DestinationCidrBlock") or params.get("DestinationIpv6CidrBlock") or ""
                    used = sim.used(table, "ipv6" if ":" in dest else "ipv4")
                    if used is not None and used >= sim.route_limit:
                        return _ec2_error(start_response, 400, "RouteLimitExceeded",
                                          f"The maximum number of routes ({sim.route_limit}) has been "
                                          f"reached for route table {table}.")
                    if sim.has_route(table, dest):  # moto silently overwrites when the target is an ENI
                        return _ec2_error(start_response, 400, "RouteAlreadyExists",
                                          f"The route identified by {dest} already exists.")
                    return app(environ, start_response)
            if action == "ReplaceRoute":
                dest = params.get("DestinationCidrBlock") or params.get("DestinationIpv6CidrBlock") or ""
                _forced_blackholes.discard((params.get("RouteTableId", ""), dest))
            return app(environ, start_response)
        elif service == "servicequotas":
            action = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
            sim._log(f"servicequotas:{action}")
            req = json.loads(body or b"{}")
            if action == "GetServiceQuota" and req.get("QuotaCode") == ROUTE_QUOTA_CODE:
                if sim.deny_quota:
                    return _json(start_response, 400, {
                        "__type": "AccessDeniedException",
                        "message": "User is not authorized to perform: servicequotas:GetServiceQuota"})
                if sim.quota_error:  # e.g. ServiceException: a transient outage (HTTP 503, retryable)
                    return _json(start_response, 503, {"__type": sim.quota_error,
                                                       "message": "injected Service Quotas error"})
                return _json(start_response, 200, {"Quota": {
                    "ServiceCode": "vpc", "ServiceName": "Amazon Virtual Private Cloud (Amazon VPC)",
                    "QuotaCode": ROUTE_QUOTA_CODE, "QuotaName": "Routes per route table",
                    "Value": float(sim.route_limit), "Unit": "None", "Adjustable": True, "GlobalQuota": False,
                    "QuotaArn": f"arn:aws:servicequotas:{sim.region}:123456789012:vpc/{ROUTE_QUOTA_CODE}"}})
        elif service:
            sim._log(f"{service}:{environ.get('HTTP_X_AMZ_TARGET', '').rpartition('.')[2] or '?'}")
        return self.app(environ, start_response)


    def _apply_then_fail(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve the request (the change is made), drop moto's answer and report an internal error."""
        result = self.app(environ, lambda *args, **kwargs: (lambda data: None))
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return _ec2_error(start_response, 500, "InternalError",
                          "An internal error has occurred (injected after the change was applied).")


def _ec2_error(start_response: Callable[..., Any], status: int, code: str, message: str) -> list[bytes]:
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
           f"<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>")
    data = xml.encode()
    start_response(f"{status} {reason}", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _json(start_response: Callable[..., Any], status: int, payload: Any) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(f"{status} {({200: 'OK', 503: 'Service Unavailable'}).get(status, 'Bad Request')}",
                   [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
    return [data]


class MotoAWS(ServedFake, InjectsFaults):
    """A moto server with a VPC, per-AZ route tables tagged for the cluster, an IGW and node instances."""

    def __init__(
        self,
        cluster_id: str = "sim",
        region: str = "us-east-1",
        *,
        azs: Iterable[str] = ("us-east-1a",),
        vpc_cidr: str = "10.0.0.0/16",
        route_limit: int = 500,
        nodes: int = 250,
        rate: float | None = None,
        burst: int | None = None,
        latency: float = 0.0,
        error_rate: float = 0.0,
        deny_quota: bool = False,
        tag_value: str = "owned",
        port: int = 0,
        seed: int | None = None,
        throttle_every: int = 0,
        error_every: int = 0,
    ) -> None:
        self.cluster_id = cluster_id
        self.region = region
        self.azs = list(azs)
        self.vpc_cidr = vpc_cidr
        self.subnet_cidrs = subnet_plan(vpc_cidr, len(self.azs), nodes)
        self.route_limit = route_limit
        self.bucket = TokenBucket(rate, burst or max(1, int(rate))) if rate else None
        self.latency = latency
        self.faults = FaultPlan(throttle_every=throttle_every, error_every=error_every, error_rate=error_rate,
                                seed=seed)
        self.deny_quota = deny_quota
        self.quota_error: str | None = None  # GetServiceQuota answers this error code with HTTP 503
        self.tag_value = tag_value
        self._port = port
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        self.call_log: list[str] = []
        self.throttled = 0
        self.injected_errors = 0
        self.vpc_id = ""
        self.igw_id = ""
        self.subnets: dict[str, str] = {}
        self.route_tables: dict[str, str] = {}  # az -> route table id
        self.nodes: dict[str, dict[str, str]] = {}  # node name -> instance, eni, az, providerID
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}

    # ----- lifecycle -----
    def start(self) -> MotoAWS:
        """Start the server on 127.0.0.1, reset moto and build the VPC, subnets, IGW and tagged tables."""
        from moto.moto_server import werkzeug_app as mw
        from werkzeug.serving import make_server

        _patch_moto_route_state()
        _forced_blackholes.clear()
        class QuietHandler(mw.MotoRequestHandler):  # type: ignore[misc,valid-type]
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        app = _Middleware(mw.DomainDispatcherApplication(mw.create_backend_app), self)
        self._serve(make_server("127.0.0.1", self._port, app, threaded=True, request_handler=QuietHandler),
                    "moto")
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))
        self._build()
        self.reset_log()
        return self

    def session(self) -> boto3.Session:
        """A boto3 session with the dummy credentials moto accepts (cached: sessions are slow to build)."""
        if self._session is None:
            self._session = boto3.Session(region_name=self.region, **CREDENTIALS)
        return self._session

    def client(self, service: str = "ec2") -> Any:
        """An admin client (its calls are logged too; use `reset_log()` after arranging)."""
        if service not in self._clients:
            self._clients[service] = self.session().client(service, endpoint_url=self.endpoint)
        return self._clients[service]

    def _backend(self) -> Any:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        return ec2_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _build(self) -> None:
        ec2 = self.client()
        self.vpc_id = ec2.create_vpc(CidrBlock=self.vpc_cidr)["Vpc"]["VpcId"]
        self.igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=self.igw_id, VpcId=self.vpc_id)
        for az, cidr in zip(self.azs, self.subnet_cidrs, strict=True):
            self.subnets[az] = ec2.create_subnet(VpcId=self.vpc_id, CidrBlock=cidr,
                                                 AvailabilityZone=az)["Subnet"]["SubnetId"]
            rtb = ec2.create_route_table(VpcId=self.vpc_id, TagSpecifications=[{
                "ResourceType": "route-table",
                "Tags": [{"Key": f"kubernetes.io/cluster/{self.cluster_id}", "Value": self.tag_value},
                         {"Key": "Name", "Value": f"{self.cluster_id}-{az}"}]}])["RouteTable"]["RouteTableId"]
            ec2.associate_route_table(RouteTableId=rtb, SubnetId=self.subnets[az])
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=self.igw_id)
            self.route_tables[az] = rtb

    # ----- arrangement -----
    @property
    def route_table_ids(self) -> list[str]:
        """Our tagged route tables, one per AZ."""
        return list(self.route_tables.values())

    def add_node(self, name: str, az: str | None = None, *, source_dest_check: bool = True,
                 extra_enis: int = 0) -> str:
        """Run an instance for node `name` (primary ENI at device 0); returns providerID aws:///<az>/<id>."""
        az = az or self.azs[len(self.nodes) % len(self.azs)]
        ec2 = self.client()
        inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.small",
                                 SubnetId=self.subnets[az], TagSpecifications=[{
                                     "ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
                                 )["Instances"][0]
        iid = inst["InstanceId"]
        eni = next(n["NetworkInterfaceId"] for n in inst["NetworkInterfaces"]
                   if n["Attachment"]["DeviceIndex"] == 0)
        for i in range(extra_enis):
            extra = ec2.create_network_interface(SubnetId=self.subnets[az])["NetworkInterface"]
            extra = extra["NetworkInterfaceId"]
            ec2.attach_network_interface(NetworkInterfaceId=extra, InstanceId=iid, DeviceIndex=i + 1)
        if not source_dest_check:
            ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": False})
        pid = f"aws:///{az}/{iid}"
        self.nodes[name] = {"instance": iid, "eni": eni, "az": az, "providerID": pid}
        return pid

    def terminate_node(self, name: str) -> None:
        """Terminate the node's instance: routes targeting its ENI become blackholes (as on EC2)."""
        self.client().terminate_instances(InstanceIds=[self.nodes[name]["instance"]])

    def blackhole(self, table: str, destination: str) -> None:
        """Force one route into the blackhole state (until a ReplaceRoute repairs it)."""
        for r in self._backend().route_tables[table].routes:
            if destination in (r.destination_cidr_block, r.destination_ipv6_cidr_block):
                _forced_blackholes.add((table, destination))
                return
        raise KeyError(f"no route {destination} in {table}")

    def add_foreign_route(self, table: str, destination: str, **target: str) -> None:
        """A route someone else owns (e.g. GatewayId=igw, NetworkInterfaceId=eni of another system)."""
        self.client().create_route(RouteTableId=table, DestinationCidrBlock=destination, **target)

    # ----- inspection -----
    def used(self, table: str, family: str | None = None) -> int | None:
        """Routes in a table (local, IGW, foreign, ours) straight from moto's state, of one family
        ("ipv4"/"ipv6") or all; None if the table is unknown."""
        rt = self._backend().route_tables.get(table)
        if rt is None:
            return None
        if family is None:
            return len(rt.routes)
        v6 = family == "ipv6"
        return sum(1 for r in rt.routes if bool(r.destination_ipv6_cidr_block) == v6)

    def fill(self, table: str, count: int, start: str = "172.16.0.0") -> list[str]:
        """Add `count` foreign /32 IPv4 routes (to the IGW) straight into moto's state (fast, not logged):
        a table someone else already filled. Returns the destinations."""
        from moto.ec2.models.route_tables import Route

        rt = self._backend().route_tables[table]
        igw = self._backend().internet_gateways[self.igw_id]
        base = int(ipaddress.ip_address(start))
        dests = [f"{ipaddress.ip_address(base + i)}/32" for i in range(count)]
        for d in dests:
            route = Route(rt, d, None, None, gateway=igw)
            rt._routes[route.id] = route
        return dests

    def has_route(self, table: str, destination: str) -> bool:
        """Whether the table already has a route to exactly this destination (as EC2 compares them)."""
        rt = self._backend().route_tables.get(table)
        try:
            want = ipaddress.ip_network(destination, strict=False)
        except ValueError:
            return False  # moto answers the malformed CIDR itself
        for r in rt.routes if rt is not None else ():
            dest = r.destination_cidr_block or r.destination_ipv6_cidr_block
            if dest and ipaddress.ip_network(dest, strict=False) == want:
                return True
        return False

    def routes(self, table: str) -> dict[str, dict[str, str | None]]:
        """destination -> {target, state} of a table, straight from moto's state (not logged)."""
        out: dict[str, dict[str, str | None]] = {}
        for r in self._backend().route_tables[table].routes:
            dest = r.destination_cidr_block or r.destination_ipv6_cidr_block
            gw = r.gateway.id if getattr(r, "gateway", None) is not None else None
            target = _route_target_id(r) or gw or ("local" if r.local else None)
            out[dest] = {"target": target, "state": r.state}
        return out

    def _log(self, action: str) -> None:
        with self._lock:
            self.call_log.append(action)

    def calls(self, action: str | None = None) -> int:
        """Logged calls (optionally only IAM action `action`, e.g. "ec2:CreateRoute")."""
        with self._lock:
            return sum(1 for a in self.call_log if action is None or a == action)

    def reset_log(self) -> None:
        """Forget logged calls and counters."""
        with self._lock:
            self.call_log.clear()
            self.throttled = 0
            self.injected_errors = 0
