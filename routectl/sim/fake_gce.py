"""A fake Google Compute Engine REST server (stdlib HTTP) serving exactly the paths routectl calls.

Tests and `routectl simulate` drive the real google-cloud-compute client against it. It enforces what
matters for a route controller: route name uniqueness (409 alreadyExists), the network's
STATIC_ROUTES_PER_NETWORK quota (every static route of the network) and, where configured, the deprecated
project ROUTES quota (403 QUOTA_EXCEEDED naming the quota), a token-bucket rate limit on mutating calls
(429, or 403 rateLimitExceeded as GCE answers per-minute budgets), operations that
go PENDING -> DONE after a delay, configurable latency and injected faults (routectl.sim.faults: 429s,
5xx, and 5xx after the change was applied), count-based or random. Every request is logged under
the IAM permission a real call needs (e.g. compute.routes.insert) for least-privilege tests.

It also serves the Cloud Quotas API path the google-cloud-quotas client uses
(GET /v1/projects/{p}/locations/global/services/compute.googleapis.com/quotaInfos[/{id}]): the
STATIC_ROUTES_PER_NETWORK QuotaInfo, or 403 when `quotas_api_denied`.

Partial responses are honoured as Google APIs do (routectl.sim.fieldmask): a `fields` query parameter or
an `X-Goog-FieldMask` header trims every successful answer; `field_masks` logs (path, mask) of each.

Run standalone: `python -m routectl.sim.fake_gce --port 8089 --instance us-central1-a/node-1`.
Admin paths for other processes: POST /_fake/instances {"zone","name","canIpForward","tags"},
GET /_fake/routes, GET /_fake/calls, POST /_fake/reset (forget the call log).
"""

from __future__ import annotations

import argparse
import base64
import collections
import itertools
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from routectl.cloud.ratelimit import TokenBucket
from routectl.sim.faults import ERROR_AFTER_APPLY, THROTTLE, FaultPlan, InjectsFaults
from routectl.sim.fieldmask import FieldMaskError, apply_field_mask, parse_field_mask
from routectl.sim.serving import ServedFake

BASE = "https://compute.fake/compute/v1"
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
FILTER_RE = re.compile(r'\(?\s*([A-Za-z][\w.]*)\s*(eq|ne|=|!=)\s*"?([^")]*?)"?\s*\)?(?:\s+AND\s+|\s+|$)')

# Extra permissions a real routes.insert with nextHopInstance is checked against.
INSERT_EXTRA_PERMISSIONS = ("compute.networks.updatePolicy", "compute.instances.use")


class _HTTPError(Exception):
    def __init__(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.headers = code, reason, message, headers or {}


def _ip_ok(cidr: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(cidr, strict=False)
        return True
    except ValueError:
        return False


class FakeGCE(ServedFake, InjectsFaults):
    """In-memory Compute project served over HTTP on 127.0.0.1 (see module docstring)."""

    def __init__(
        self,
        project: str = "sim-project",
        network: str = "default",
        *,
        routes_quota: int | None = 250,
        static_routes_quota: int | None = None,
        quotas_api_denied: bool = False,
        rate_limit_status: int = 429,
        rate: float | None = None,
        burst: int | None = None,
        latency: float = 0.0,
        error_rate: float = 0.0,
        op_delay: float = 0.05,
        port: int = 0,
        quota_error_in_operation: bool = False,
        seed: int | None = None,
        throttle_every: int = 0,
        error_every: int = 0,
    ) -> None:
        self.project = project
        self.network = network
        self.routes_quota = routes_quota  # project ROUTES (deprecated); None: the project does not report it
        self.static_routes_quota = static_routes_quota  # per network; None: not enforced nor reported
        self.quotas_api_denied = quotas_api_denied
        # network numeric id -> STATIC_ROUTES_PER_NETWORK granted to that network (a quota preference);
        # it replaces static_routes_quota (the default) for that network
        self.network_quota_overrides: dict[str, int] = {}
        self.network_ids: dict[str, str] = {}
        self.rate_limit_status = rate_limit_status
        self.latency = latency
        self.faults = FaultPlan(throttle_every=throttle_every, error_every=error_every, error_rate=error_rate,
                                seed=seed)
        self.op_delay = op_delay
        self.quota_error_in_operation = quota_error_in_operation
        self.bucket = TokenBucket(rate, burst or max(1, int(rate))) if rate else None
        self._port = port
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1000)
        self.routes: dict[str, dict[str, Any]] = {}
        self._per_network: collections.Counter[str | None] = collections.Counter()  # routes per network URL
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._op_done_at: dict[str, float] = {}
        self.call_log: list[tuple[str, str]] = []
        self.permission_log: list[str] = []
        self.field_masks: list[tuple[str, str]] = []  # (path, mask) of requests asking for partial answers
        self.throttled = 0
        self.injected_errors = 0

    # ----- lifecycle -----
    def start(self) -> FakeGCE:
        """Start serving on 127.0.0.1 in a daemon thread."""
        fake = self

        class Handler(_Handler):
            gce = fake

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._serve(server, "fake-gce")
        return self

    # ----- arrangement and inspection -----
    def network_url(self, network: str | None = None) -> str:
        """Full URL of a network in this project."""
        return f"{BASE}/projects/{self.project}/global/networks/{network or self.network}"

    def add_instance(self, zone: str, name: str, can_ip_forward: bool = True, tags: Iterable[str] = (),
                     project: str | None = None) -> str:
        """Create an instance; returns its providerID gce://project/zone/name."""
        project = project or self.project
        with self._lock:
            self.instances[(zone, name)] = {
                "kind": "compute#instance",
                "id": str(next(self._ids)),
                "name": name,
                "zone": f"{BASE}/projects/{project}/zones/{zone}",
                "canIpForward": can_ip_forward,
                "status": "RUNNING",
                "tags": {"items": list(tags)},
                "networkInterfaces": [{"network": self.network_url(), "networkIP": "10.128.0.2"}],
                "selfLink": f"{BASE}/projects/{project}/zones/{zone}/instances/{name}",
            }
        return f"gce://{project}/{zone}/{name}"

    def remove_instance(self, zone: str, name: str) -> None:
        """Delete an instance (its routes stay, as on GCE, pointing at nothing)."""
        with self._lock:
            self.instances.pop((zone, name), None)

    def add_foreign_route(self, name: str, dest_range: str, *, next_hop_instance: str | None = None,
                          next_hop_gateway: str | None = None, description: str = "",
                          network: str | None = None, priority: int = 1000) -> None:
        """A route somebody else created (counts toward the quota; routectl must never touch it)."""
        body: dict[str, Any] = {"name": name, "destRange": dest_range, "network": self.network_url(network),
                                "priority": priority, "description": description}
        if next_hop_instance:
            body["nextHopInstance"] = next_hop_instance
        if next_hop_gateway:
            body["nextHopGateway"] = next_hop_gateway
        with self._lock:
            self._store_route(body)

    def routes_snapshot(self) -> dict[str, dict[str, Any]]:
        """Copy of all routes by name."""
        with self._lock:
            return json.loads(json.dumps(self.routes))

    def calls(self, permission: str | None = None) -> int:
        """Number of logged calls (optionally only those with `permission`)."""
        with self._lock:
            return sum(1 for _, p in self.call_log if permission is None or p == permission)

    def required_permissions(self) -> set[str]:
        """Every IAM permission the logged calls needed (including routes.insert's extra ones)."""
        with self._lock:
            return set(self.permission_log)

    def reset_log(self) -> None:
        """Forget logged calls and counters."""
        with self._lock:
            self.call_log.clear()
            self.permission_log.clear()
            self.field_masks.clear()
            self.throttled = 0
            self.injected_errors = 0

    # ----- internals -----
    def _store_route(self, body: dict[str, Any]) -> dict[str, Any]:
        route = dict(body)
        route.setdefault("priority", 1000)
        route.update(kind="compute#route", id=str(next(self._ids)),
                     creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
                     selfLink=f"{BASE}/projects/{self.project}/global/routes/{body['name']}")
        for key in ("nextHopInstance", "network"):
            if key in route and not route[key].startswith("http"):
                route[key] = f"{BASE}/{route[key].removeprefix('/')}" if route[key].startswith("projects/") \
                    else f"{BASE}/projects/{self.project}/{route[key].removeprefix('/')}"
        old = self.routes.get(route["name"])
        if old is not None:
            self._per_network[old.get("network")] -= 1
        self.routes[route["name"]] = route
        self._per_network[route.get("network")] += 1
        return route

    def _new_op(self, op_type: str, target: str, error: dict[str, Any] | None = None,
                http_status: int | None = None) -> dict[str, Any]:
        name = f"operation-{next(self._ids)}-{self._rng.getrandbits(32):08x}"
        op: dict[str, Any] = {
            "kind": "compute#operation", "id": str(next(self._ids)), "name": name,
            "operationType": op_type, "targetLink": target, "status": "PENDING", "progress": 0,
            "selfLink": f"{BASE}/projects/{self.project}/global/operations/{name}",
        }
        if error:
            op["_error"] = error
            op["_httpErrorStatusCode"] = http_status
        self.operations[name] = op
        self._op_done_at[name] = time.monotonic() + self.op_delay
        return self._op_view(name)

    def _op_view(self, name: str) -> dict[str, Any]:
        op = self.operations[name]
        view = {k: v for k, v in op.items() if not k.startswith("_")}
        if time.monotonic() >= self._op_done_at[name]:
            view.update(status="DONE", progress=100)
            if "_error" in op:
                view["error"] = op["_error"]
                view["httpErrorStatusCode"] = op["_httpErrorStatusCode"]
        return view

    def _quota_usage(self) -> int:
        return len(self.routes)

    def network_id(self, network: str | None = None) -> str:
        """The numeric id of a network (stable once asked for)."""
        with self._lock:
            return self.network_ids.setdefault(network or self.network, str(next(self._ids)))

    def static_routes_limit(self) -> int | None:
        """STATIC_ROUTES_PER_NETWORK of our network: its override, else the default."""
        return self.network_quota_overrides.get(self.network_id(), self.static_routes_quota)

    def network_static_routes(self, network: str | None = None) -> int:
        """Static routes of one network (every route here is static), IPv4 and IPv6 together."""
        return self._per_network[self.network_url(network)]  # kept per write: a scan per insert was O(N^2)

    def _quota_info(self) -> dict[str, Any]:
        from routectl.cloud.gce import STATIC_ROUTES_METRIC, STATIC_ROUTES_QUOTA_ID

        parent = f"projects/{self.project}/locations/global/services/compute.googleapis.com"
        overrides = sorted(self.network_quota_overrides.items())
        infos = [{"dimensions": {"network_id": net_id}, "details": {"value": str(value)},
                  "applicableLocations": ["global"]} for net_id, value in overrides]
        infos.append({"dimensions": {}, "details": {"value": str(self.static_routes_quota)},
                      "applicableLocations": ["global"]})
        return {"name": f"{parent}/quotaInfos/{STATIC_ROUTES_QUOTA_ID}", "quotaId": STATIC_ROUTES_QUOTA_ID,
                "metric": STATIC_ROUTES_METRIC, "service": "compute.googleapis.com", "isPrecise": True,
                "containerType": "PROJECT", "dimensions": ["network_id"],
                "quotaDisplayName": "Static routes per VPC network", "dimensionsInfos": infos}

    def handle_quotas(self, method: str, parts: list[str]) -> tuple[int, Any]:
        """The Cloud Quotas API: GET .../quotaInfos[/{id}] for compute.googleapis.com."""
        with self._lock:
            self.call_log.append((method, "cloudquotas.quotas.get"))
            self.permission_log.append("cloudquotas.quotas.get")
        if self.quotas_api_denied:
            raise _HTTPError(403, "IAM_PERMISSION_DENIED",
                             "Permission 'cloudquotas.quotas.get' denied on resource (or it may not exist).")
        # v1 projects <p> locations global services <svc> quotaInfos [id]
        if len(parts) < 8 or parts[1] != "projects" or parts[2] != self.project or parts[7] != "quotaInfos":
            raise _HTTPError(404, "notFound", "unknown Cloud Quotas path")
        known = [] if self.static_routes_quota is None else [self._quota_info()]
        if len(parts) == 8:
            return 200, {"quotaInfos": known}
        found = [q for q in known if q["quotaId"] == parts[8]]
        if not found:
            raise _HTTPError(404, "notFound", f"QuotaInfo {parts[8]} not found")
        return 200, found[0]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        """Serve one request; returns (status, json). Raises _HTTPError for error answers."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["v1"] and method == "GET":
            return self.handle_quotas(method, parts)
        if parts[:2] != ["compute", "v1"] or len(parts) < 4 or parts[2] != "projects":
            raise _HTTPError(404, "notFound", f"unknown path {path}")
        project, rest = parts[3], parts[4:]
        perm, mutating = self._permission(method, rest)
        with self._lock:
            self.call_log.append((method, perm))
            self.permission_log.append(perm)
            if perm == "compute.routes.insert":
                self.permission_log.extend(INSERT_EXTRA_PERMISSIONS)
        if self.latency:
            time.sleep(self.latency)
        if mutating and self.bucket and not self.bucket.try_acquire():
            with self._lock:
                self.throttled += 1
            raise _HTTPError(self.rate_limit_status, "rateLimitExceeded",
                             "Quota exceeded for quota metric Global mutation requests (rate limit)")
        key = f"{method} {path} {sorted(query.items())} {json.dumps(body, sort_keys=True)}"
        fault = self.faults.decide(key, mutating)
        if fault == THROTTLE:
            with self._lock:
                self.throttled += 1
            raise _HTTPError(429, "rateLimitExceeded", "Rate Limit Exceeded (injected)")
        applied_then_fail = fault == ERROR_AFTER_APPLY  # the change happens, the answer is lost
        if fault is not None and fault != THROTTLE:
            with self._lock:
                self.injected_errors += 1
            if not applied_then_fail:
                raise _HTTPError(503, "backendError", "injected backend error")
        if project != self.project:
            raise _HTTPError(404, "notFound", f"The resource 'projects/{project}' was not found")
        with self._lock:
            status, out = self._dispatch(method, rest, query, body)
        if applied_then_fail:
            raise _HTTPError(503, "backendError", "injected backend error after apply")
        return status, out

    @staticmethod
    def _permission(method: str, rest: list[str]) -> tuple[str, bool]:
        if not rest:
            return "compute.projects.get", False
        if rest[:2] == ["global", "routes"]:
            if method == "POST":
                return "compute.routes.insert", True
            if method == "DELETE":
                return "compute.routes.delete", True
            return ("compute.routes.get" if len(rest) > 2 else "compute.routes.list"), False
        if rest[:2] == ["global", "operations"]:
            return "compute.globalOperations.get", False
        if rest[0] == "zones" and len(rest) >= 4 and rest[2] == "instances":
            return "compute.instances.get", False
        if rest[0] == "zones" and len(rest) == 3 and rest[2] == "instances":
            return "compute.instances.list", False
        if rest[:2] == ["global", "networks"] and len(rest) == 3:
            return "compute.networks.get", False
        return "compute.unknown", False

    def _dispatch(self, method: str, rest: list[str], query: dict[str, list[str]],
                  body: Any) -> tuple[int, Any]:
        if not rest and method == "GET":
            quotas: list[dict[str, Any]] = [{"metric": "NETWORKS", "limit": 15.0, "usage": 1.0}]
            if self.routes_quota is not None:
                quotas.insert(0, {"metric": "ROUTES", "limit": float(self.routes_quota),
                                  "usage": float(self._quota_usage())})
            return 200, {"kind": "compute#project", "name": self.project, "quotas": quotas}
        if rest[:2] == ["global", "routes"]:
            if len(rest) == 2 and method == "POST":
                return 200, self._insert(body or {})
            if len(rest) == 2 and method == "GET":
                return 200, self._list(query)
            if len(rest) == 3:
                name = rest[2]
                if name not in self.routes:
                    raise _HTTPError(404, "notFound", f"The resource "
                                     f"'projects/{self.project}/global/routes/{name}' was not found")
                if method == "GET":
                    return 200, self.routes[name]
                if method == "DELETE":
                    gone = self.routes.pop(name)
                    self._per_network[gone.get("network")] -= 1
                    link = gone["selfLink"]
                    return 200, self._new_op("delete", link)
        if rest[:2] == ["global", "networks"] and len(rest) == 3 and method == "GET":
            if rest[2] != self.network:
                raise _HTTPError(404, "notFound", f"The resource 'projects/{self.project}/global/networks/"
                                 f"{rest[2]}' was not found")
            net_id = self.network_id(rest[2])
            return 200, {"kind": "compute#network", "id": net_id, "name": rest[2],
                         "selfLink": self.network_url(rest[2])}
        if rest[:2] == ["global", "operations"] and len(rest) >= 3:
            name = rest[2]
            if name not in self.operations:
                raise _HTTPError(404, "notFound", f"operation {name} not found")
            if len(rest) == 4 and rest[3] == "wait" and method == "POST":
                remaining = self._op_done_at[name] - time.monotonic()
                if remaining > 0:
                    self._lock.release()
                    try:
                        time.sleep(min(remaining, 30.0))
                    finally:
                        self._lock.acquire()
            return 200, self._op_view(name)
        if rest[0] == "zones" and len(rest) == 3 and rest[2] == "instances" and method == "GET":
            zone = rest[1]
            items = [v for (z, _), v in sorted(self.instances.items()) if z == zone]
            return 200, self._page(items, query, "compute#instanceList",
                                   f"{BASE}/projects/{self.project}/zones/{zone}/instances")
        if rest[0] == "zones" and len(rest) == 4 and rest[2] == "instances" and method == "GET":
            inst = self.instances.get((rest[1], rest[3]))
            if inst is None:
                where = f"projects/{self.project}/zones/{rest[1]}/instances/{rest[3]}"
                raise _HTTPError(404, "notFound", f"The resource '{where}' was not found")
            return 200, inst
        raise _HTTPError(404, "notFound", f"unsupported {method} {'/'.join(rest)}")

    def _insert(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name", ""))
        if not NAME_RE.match(name):
            raise _HTTPError(400, "invalid", f"Invalid value for field 'resource.name': '{name}'. Must be a "
                             "match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        if not _ip_ok(str(body.get("destRange", ""))):
            raise _HTTPError(400, "invalid", f"Invalid value for field 'resource.destRange': "
                             f"'{body.get('destRange')}'")
        net = str(body.get("network", ""))
        if not ("/" + net.rstrip("/")).endswith(f"/global/networks/{self.network}") and net != self.network:
            raise _HTTPError(404, "notFound", f"The resource '{net}' was not found")
        hop = body.get("nextHopInstance")
        if hop:
            m = re.search(r"zones/([^/]+)/instances/([^/]+)$", hop)
            if not m or (m.group(1), m.group(2)) not in self.instances:
                raise _HTTPError(404, "notFound", f"The resource '{hop}' was not found")
        if name in self.routes:
            raise _HTTPError(409, "alreadyExists",
                             f"The resource 'projects/{self.project}/global/routes/{name}' already exists")
        link = f"{BASE}/projects/{self.project}/global/routes/{name}"
        msg = ""
        static = self.static_routes_limit()
        if static is not None and self.network_static_routes() >= static:
            msg = (f"Quota 'STATIC_ROUTES_PER_NETWORK' exceeded.  Limit: {float(static)} "
                   f"in network {self.network}.")
        elif self.routes_quota is not None and self._quota_usage() >= self.routes_quota:
            msg = f"Quota 'ROUTES' exceeded.  Limit: {float(self.routes_quota)} globally."
        if msg:
            if self.quota_error_in_operation:
                err = {"errors": [{"code": "QUOTA_EXCEEDED", "message": msg}]}
                return self._new_op("insert", link, err, 403)
            raise _HTTPError(403, "QUOTA_EXCEEDED", msg)
        self._store_route(body)
        return self._new_op("insert", link)

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        items = sorted(self.routes.values(), key=lambda r: r["name"])
        return self._page(items, query, "compute#routeList", f"{BASE}/projects/{self.project}/global/routes")

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, list[str]], kind: str,
              link: str) -> dict[str, Any]:
        """One page (maxResults <= 500, opaque pageToken) of `items` after the list filter."""
        max_results = min(500, int(query.get("maxResults", ["500"])[0] or 500))
        token = query.get("pageToken", [""])[0]
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            raise _HTTPError(400, "invalid", f"Invalid value for pageToken: '{token}'") from None
        flt = query.get("filter", [""])[0]
        if flt:
            clauses = _filter_clauses(flt)
            items = [r for r in items if _match_filter(clauses, r)]
        page = items[start:start + max_results]
        out: dict[str, Any] = {"kind": kind, "items": page, "selfLink": link}
        if start + max_results < len(items):
            out["nextPageToken"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode()
        return out


def _filter_clauses(flt: str) -> list[tuple[str, str, str, re.Pattern[str] | None]]:
    """GCE list filter subset: `f eq "regex"`, `f ne "regex"`, `f = "v"`, `f != "v"`, ANDed (parsed once
    per request, not per item: a page of a 5,000-route list scanned them all)."""
    clauses = FILTER_RE.findall(flt)
    if not clauses:
        raise _HTTPError(400, "invalid", f"Invalid list filter expression '{flt}'")
    return [(f, op, v, re.compile(v) if op in ("eq", "ne") else None) for f, op, v in clauses]


def _match_filter(clauses: list[tuple[str, str, str, re.Pattern[str] | None]], item: dict[str, Any]) -> bool:
    """Whether `item` passes every clause."""
    for field, op, value, pattern in clauses:
        actual = str(item.get(field, ""))
        if pattern is not None:
            ok = pattern.fullmatch(actual) is not None
            ok = ok if op == "eq" else not ok
        else:
            ok = actual == value if op == "=" else actual != value
        if not ok:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    gce: FakeGCE
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self._send(400, {"error": {"code": 400, "message": "Invalid JSON payload",
                                       "errors": [{"reason": "parseError"}]}})
            return
        try:
            if url.path.startswith("/_fake/"):
                self._send(200, self._admin(method, url.path, body))
                return
            query = parse_qs(url.query)
            mask = (query.pop("fields", None) or query.pop("$fields", None) or [None])[0] \
                or self.headers.get("X-Goog-FieldMask")
            try:
                selection = parse_field_mask(mask) if mask else None
            except FieldMaskError as e:
                raise _HTTPError(400, "invalid", f"Invalid field selection: {e}") from None
            if mask:
                with self.gce._lock:
                    self.gce.field_masks.append((url.path, mask))
            status, out = self.gce.handle(method, url.path, query, body)
            self._send(status, apply_field_mask(out, selection))
        except _HTTPError as e:
            self._send(e.code, {"error": {"code": e.code, "message": e.message, "errors": [
                {"reason": e.reason, "message": e.message, "domain": "global"}]}}, e.headers)

    def _admin(self, method: str, path: str, body: Any) -> Any:
        if path == "/_fake/instances" and method == "POST":
            return {"providerID": self.gce.add_instance(body["zone"], body["name"],
                                                        body.get("canIpForward", True), body.get("tags", ()))}
        if path == "/_fake/routes":
            return self.gce.routes_snapshot()
        if path == "/_fake/reset" and method == "POST":
            self.gce.reset_log()
            return {}
        if path == "/_fake/calls":
            with self.gce._lock:
                return {"calls": self.gce.call_log, "throttled": self.gce.throttled}
        raise _HTTPError(404, "notFound", path)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


def main(argv: list[str] | None = None) -> None:
    """Run a FakeGCE in the foreground (for a controller in another process)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--project", default="sim-project")
    p.add_argument("--network", default="default")
    p.add_argument("--routes-quota", type=int, default=250)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--burst", type=int, default=None)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--op-delay", type=float, default=0.05)
    p.add_argument("--instance", action="append", default=[], help="zone/name (repeatable)")
    p.add_argument("--instance-count", type=int, default=0, help="also create <prefix>0..N-1")
    p.add_argument("--instance-prefix", default="node-")
    p.add_argument("--zone", default="us-central1-a", help="zone of --instance-count instances")
    a = p.parse_args(argv)
    fake = FakeGCE(a.project, a.network, routes_quota=a.routes_quota, rate=a.rate, burst=a.burst,
                   latency=a.latency, error_rate=a.error_rate, op_delay=a.op_delay, port=a.port)
    for spec in a.instance:
        zone, _, name = spec.partition("/")
        fake.add_instance(zone, name)
    for i in range(a.instance_count):
        fake.add_instance(a.zone, f"{a.instance_prefix}{i}")
    fake.start()
    print(json.dumps({"endpoint": fake.endpoint, "project": a.project}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
