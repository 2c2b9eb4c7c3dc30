"""Thin async Kubernetes writes the controller needs: node podCIDRs, node condition, pool status, Events.

A small aiohttp client whose credentials come from the official `kubernetes` package's kubeconfig or
in-cluster loader (the same source kopf logs in with). Each write is one request with the semantics
the issue asks for: conditional podCIDR writes, strategic-merge status patches, merge-patched pool status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from routectl.constants import (
    API_VERSION,
    CLUSTER_EVENT_NAMESPACE,
    COMPONENT,
    CONDITION_NETWORK_UNAVAILABLE,
    GROUP,
    POOL_PLURAL,
    VERSION,
)

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
log = logging.getLogger(__name__)
STRATEGIC = "application/strategic-merge-patch+json"

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
POOLS_PATH = f"/apis/{GROUP}/{VERSION}/{POOL_PLURAL}"


class ApiError(Exception):
    """A non-2xx answer from the Kubernetes API (status code, reason and message kept)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def conflict(self) -> bool:
        """A lost optimistic-concurrency race: 409 Conflict, or 422 from a failed JSON-patch `test`."""
        return self.status in (409, 422)


def now_rfc3339() -> str:
    """Current UTC time as Kubernetes writes it (second precision, Z suffix)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """Current UTC time with microseconds (Lease renewTime / acquireTime are MicroTime)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Credentials:
    """Where the API is and how to authenticate, as loaded by the official client's config loaders."""

    host: str
    token: str | None  # "Bearer xyz" as a header value, or None
    ca_path: str | None
    verify: bool
    cert_file: str | None
    key_file: str | None
    token_file: str | None = None  # in cluster: the projected token the kubelet rotates

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for aiohttp (False for plain HTTP or when verification is off)."""
        if not self.host.startswith("https") or not self.verify:
            return False
        ctx = ssl.create_default_context(cafile=self.ca_path)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def load_credentials(kubeconfig: str | None) -> Credentials:
    """Read host and credentials like kopf does: in cluster (service account) or from a kubeconfig."""
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    cfg = kclient.Configuration()
    token_file = None
    if kubeconfig is None and "KUBECONFIG" not in os.environ and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kconfig.load_incluster_config(client_configuration=cfg)
        token_file = SERVICE_ACCOUNT_TOKEN
    else:
        kconfig.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"),
                                 client_configuration=cfg)
    token = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix("BearerToken")
    return Credentials(cfg.host.rstrip("/"), token or None, cfg.ssl_ca_cert, bool(cfg.verify_ssl),
                       cfg.cert_file, cfg.key_file, token_file)


class KubeClient:
    """Minimal async Kubernetes API client (JSON in, JSON out) with bounded retries on 429/5xx."""

    def __init__(self, host: str, headers: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | bool = False, timeout: float = 30.0,
                 user_agent: str = COMPONENT, token_file: str | None = None, connections: int = 32) -> None:
        self.host = host.rstrip("/")
        self._headers = {"User-Agent": user_agent, **(headers or {})}
        self._token_file = token_file
        self._token_read = time.monotonic()
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None  # long reads, off the work connections
        self._connections = connections
        self._fenced_except: str | None = None  # set once leadership is lost: only this path may be written

    def fence(self, allowed_prefix: str) -> None:
        """Refuse every later write except under `allowed_prefix` (the Lease): leadership is lost, so
        this replica must not write Nodes, pools or Events any more, even from a handler still running."""
        self._fenced_except = allowed_prefix

    @property
    def fenced(self) -> bool:
        """Whether :meth:`fence` was called."""
        return self._fenced_except is not None

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, user_agent: str = COMPONENT, *,
                    timeout: float = 30.0, connections: int = 32) -> KubeClient:
        """A client for the cluster named by `kubeconfig`, $KUBECONFIG, or the pod's service account."""
        creds = load_credentials(kubeconfig)
        headers = {"Authorization": creds.token} if creds.token else {}
        return cls(creds.host, headers, creds.ssl_context(), timeout, user_agent=user_agent,
                   token_file=creds.token_file, connections=connections)

    def _auth_header(self) -> dict[str, str]:
        """Re-read a rotated service-account token at most once a minute (the kubelet refreshes it)."""
        if self._token_file and time.monotonic() - self._token_read > 60:
            self._token_read = time.monotonic()
            try:
                with open(self._token_file, encoding="utf-8") as f:
                    self._headers["Authorization"] = "Bearer " + f.read().strip()
            except OSError:
                pass  # keep the last token; the API will say 401 if it is really gone
        auth = self._headers.get("Authorization")
        return {"Authorization": auth} if auth else {}

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._watch_session is not None:
            await self._watch_session.close()
            self._watch_session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections))
        return self._session

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        """One API call; raises ApiError for non-2xx after retrying throttling and 5xx a few times."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json", **self._auth_header()}
        delay = 0.2
        for attempt in range(5):
            if method != "GET" and self._fenced_except is not None and \
                    not path.startswith(self._fenced_except):
                raise ApiError(0, "Fenced", f"{method} {path}: not the leader any more, write refused")
            try:
                async with self._sess().request(method, self.host + path, data=data, headers=headers,
                                                params=params) as resp:
                    text = await resp.text()
                    if resp.status < 300:
                        return json.loads(text) if text else {}
                    if resp.status in (429, 500, 502, 503, 504) and attempt < 4:
                        await asyncio.sleep(delay)
                        delay *= 2
                        continue
                    reason, message = resp.reason or "", text
                    try:
                        status = json.loads(text)
                        reason = status.get("reason", reason)
                        message = status.get("message", text)
                    except ValueError:
                        pass
                    raise ApiError(resp.status, reason, message)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if attempt >= 4:
                    raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from exc
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any]:
        """GET one object or list."""
        return await self.request("GET", path)

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> AsyncIterator[
            dict[str, Any]]:
        """Stream the watch events of a collection from `resource_version` (bookmarks on), one dict each,
        until the server ends the watch. Raises ApiError for a refused watch (410 when it cannot resume).

        Runs on a session of its own (no total timeout, one connection per watch), so a watch neither
        takes one of the work connections nor is cut by their 30 s request timeout."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30))
        params = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
                  "timeoutSeconds": str(timeout_seconds)}
        headers = {"Accept": "application/json", **self._auth_header()}
        try:
            async with self._watch_session.get(self.host + path, params=params, headers=headers) as resp:
                if resp.status >= 300:
                    text = await resp.text()
                    try:
                        status = json.loads(text)
                    except ValueError:
                        status = {}
                    raise ApiError(resp.status, status.get("reason", resp.reason or ""),
                                   status.get("message", text))
                pending = b""  # no line-length limit: a Node with many images is a long line
                async for chunk in resp.content.iter_any():
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ApiError(0, "Unreachable", f"WATCH {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------- nodes
async def set_node_pod_cidrs(client: KubeClient, name: str, uid: str,
                             cidrs: tuple[str, ...]) -> dict[str, Any]:
    """Write spec.podCIDR and spec.podCIDRs together on the Node object `uid`, never over another value.

    Only "someone else set a podCIDR meanwhile" can make this fail (422): the API server refuses any
    change of a podCIDR once set (and takes the same value again as a no-op), so the patch needs no
    resourceVersion precondition, which the kubelet's status updates broke on nearly every new node.
    The `test` on metadata.uid keeps the write off a Node deleted and re-created under the same name.
    """
    patch: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid}] if uid else []
    patch += [
        {"op": "add", "path": "/spec/podCIDR", "value": cidrs[0]},
        {"op": "add", "path": "/spec/podCIDRs", "value": list(cidrs)},
    ]
    return await client.request("PATCH", f"/api/v1/nodes/{name}", patch, content_type=JSON_PATCH)


def network_condition(ok: bool, reason: str, message: str) -> dict[str, Any]:
    """The NetworkUnavailable condition as the cloud route controller writes it."""
    stamp = now_rfc3339()
    return {
        "type": CONDITION_NETWORK_UNAVAILABLE,
        "status": "False" if ok else "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
        "lastHeartbeatTime": stamp,
    }


async def patch_node_condition(client: KubeClient, name: str, condition: dict[str, Any]) -> dict[str, Any]:
    """Strategic-merge one condition into Node status: conditions merge by type, the kubelet's survive."""
    body = {"status": {"conditions": [condition]}}
    return await client.request("PATCH", f"/api/v1/nodes/{name}/status", body, content_type=STRATEGIC)


async def patch_node_annotation(client: KubeClient, name: str, key: str, value: str | None) -> dict[str, Any]:
    """Merge-patch one annotation of a Node (None removes it); nothing else of the Node is touched."""
    body = {"metadata": {"annotations": {key: value}}}
    return await client.request("PATCH", f"/api/v1/nodes/{name}", body, content_type=MERGE)


# ---------------------------------------------------------------------------------------------- pools
async def patch_pool_status(client: KubeClient, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch a PodCIDRPool's status subresource."""
    return await client.request("PATCH", f"{POOLS_PATH}/{name}/status", {"status": status},
                                content_type=MERGE)


# --------------------------------------------------------------------------------------------- events
class EventRecorder:
    """Posts core/v1 Events about Nodes and Pools; identical events within `dedupe_seconds` are sent once.

    The dedupe keeps a periodic resync from spamming the same failure every cycle (kube's recorder
    aggregates by count for the same reason). `enqueue()` is what the controller uses: Events go to a
    bounded queue posted by tasks of their own, so they never delay a podCIDR or a condition write, and
    under load they are the first thing dropped (counted in `dropped`, and `on_drop` for the metric).
    """

    def __init__(self, client: KubeClient, namespace: str = "default", dedupe_seconds: float = 600.0,
                 instance: str = "", log_every: float = 60.0, queue_size: int = 1000, senders: int = 4,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.client = client
        self.queue_size = queue_size
        self.on_drop = on_drop
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]] | None = None
        self.senders = senders  # posting tasks: a few, so Events keep up with a burst of new nodes
        self._senders: list[asyncio.Task[None]] = []
        self.dropped = 0  # Events not posted because the queue was full (load shedding)
        self.log_every = log_every
        self.namespace = namespace
        self.dedupe_seconds = dedupe_seconds
        self.instance = instance
        self._sent: dict[tuple[str, str, str], float] = {}
        self.posted = 0
        self.failed = 0  # posts the API refused or that did not reach it (logged, rate-limited)
        self._failed_logged = -1e9
        self._failed_unlogged = 0

    def enqueue(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> bool:
        """Queue one Event for the sender tasks and return at once; False when it was a repeat within the
        dedupe window or dropped because the queue is full (then counted)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.queue_size)
        if not self._senders or any(t.done() for t in self._senders):
            loop = asyncio.get_running_loop()
            self._senders = [t for t in self._senders if not t.done()]
            self._senders += [loop.create_task(self._send_loop(self._queue), name="routectl-events")
                              for _ in range(self.senders - len(self._senders))]
        if self._queue.full():  # shed: not remembered as sent, so a later repeat may still be posted
            if not self._repeat(obj, reason, message):
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop()
            return False
        if not self._fresh(obj, reason, message):
            return False
        self._queue.put_nowait((obj, event_type, reason, message))
        return True

    async def _send_loop(self, queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]]) -> None:
        while True:
            obj, event_type, reason, message = await queue.get()
            try:
                await self._send(obj, event_type, reason, message)
            finally:
                queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued Event is posted (or failed); tests and shutdown use it."""
        if self._queue is not None and any(not t.done() for t in self._senders):
            await self._queue.join()

    async def close(self) -> None:
        """Stop the sender tasks (queued Events are dropped: best effort, like client-go's recorder)."""
        for t in self._senders:
            t.cancel()
        for t in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._senders = []
        self._queue = None

    @staticmethod
    def _key(obj: dict[str, Any], reason: str, message: str) -> tuple[str, str, str]:
        """Dedupe key: the same reason and message about the same object (uid, else name)."""
        meta = obj.get("metadata") or {}
        who = meta.get("uid") or obj.get("uid") or meta.get("name") or obj.get("name") or ""
        return (who, reason, message)

    def _repeat(self, obj: dict[str, Any], reason: str, message: str) -> bool:
        """True for the same Event about the same object within the dedupe window."""
        return time.monotonic() - self._sent.get(self._key(obj, reason, message), -1e9) < self.dedupe_seconds

    def _fresh(self, obj: dict[str, Any], reason: str, message: str) -> bool:
        """False for a repeat within the dedupe window; otherwise remember it as sent now."""
        if self._repeat(obj, reason, message):
            return False
        key = self._key(obj, reason, message)
        now = time.monotonic()
        self._sent[key] = now
        if len(self._sent) > 10000:
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.dedupe_seconds}
        return True

    async def post(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Post one Event about `obj` (a body or {kind, name, uid, apiVersion}) now; never raises."""
        if self._fresh(obj, reason, message):
            await self._send(obj, event_type, reason, message)

    async def _send(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        kind = obj.get("kind") or ""
        name = meta.get("name") or obj.get("name") or ""
        uid = meta.get("uid") or obj.get("uid") or ""
        now = time.monotonic()
        stamp = now_rfc3339()
        # a namespaced object's Event lives in its namespace; a cluster-scoped one's only in "default"
        namespace = meta.get("namespace") or obj.get("namespace") or CLUSTER_EVENT_NAMESPACE
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "kind": kind, "name": name, "uid": uid,
                "apiVersion": obj.get("apiVersion") or ("v1" if kind == "Node" else API_VERSION),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.client.request("POST", f"/api/v1/namespaces/{namespace}/events", event)
            self.posted += 1
        except ApiError as exc:  # best effort, as in client-go's recorder, but never silent
            self.failed += 1
            if exc.reason == "Fenced":
                return  # not the leader any more: said once by the fence itself
            if now - self._failed_logged >= self.log_every:
                more = f" ({self._failed_unlogged} more failed since the last report)" \
                    if self._failed_unlogged else ""
                log.warning("posting Event %s about %s %s failed: %s%s", reason, kind, name, exc, more)
                self._failed_logged, self._failed_unlogged = now, 0
            else:
                self._failed_unlogged += 1
