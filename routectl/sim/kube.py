"""Kubernetes API emulator over real HTTP on 127.0.0.1, for kopf, the official client and kubectl.

This module is the facade: :class:`KubeServer` hosts the emulator in its own thread and event loop, writes
a kubeconfig and offers thread-safe helpers. The parts, one job each: HTTP dispatch
(:mod:`~routectl.sim.kube_http`), watch streams (:mod:`~routectl.sim.kube_watch`), discovery and OpenAPI
(:mod:`~routectl.sim.kube_discovery`), the request log (:mod:`~routectl.sim.kube_log`), injected faults
(:mod:`~routectl.sim.kube_faults`), routes (:mod:`~routectl.sim.kube_route`), object semantics
(:mod:`~routectl.sim.kube_store`: resourceVersion, 409/422, status split, finalizers, namespaces, CRDs),
patches, selectors, schemas, CEL rules, tables and the watch gate.
Standalone: ``python -m routectl.sim.kube --port P --kubeconfig FILE [--crd crds/podcidrpool.yaml]``.

Emulated: discovery (/api, /apis, groups, APIResourceList with subresources, /version, /healthz,
a skeletal /openapi/v3), get/list/watch/create/update(PUT)/patch(merge, JSON, strategic)/delete/
deletecollection on core v1 nodes, namespaces, pods, events, configmaps, coordination.k8s.io leases,
events.k8s.io events, CRDs and every custom resource they declare; label and field selectors on list and
watch (with ADDED/DELETED when an object enters/leaves a selection), watch resume from a resourceVersion
(410 when compacted), bookmarks, timeoutSeconds, sendInitialEvents; limit/continue paging; the Table form
with printer columns; fieldValidation=Strict for custom resources; fault injection; a request log.

CRDs' CEL ``x-kubernetes-validations`` are evaluated (:mod:`~routectl.sim.kube_cel`); watch events can be
held back, delayed and reordered per object on request (:mod:`~routectl.sim.kube_watchgate`).

NOT emulated: authentication/authorization/admission webhooks, server-side apply (415), dryRun (400),
CRD version conversion (objects are served as stored), managedFields,
garbage collection of ownerReferences, pod/node controllers (nothing sets Ready or evicts), graceful pod
deletion, protobuf, the legacy /api/v1/watch paths, persistence across emulator restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp.web

from routectl.sim.kube_faults import Fault
from routectl.sim.kube_http import KubeEmulator
from routectl.sim.kube_log import RequestLog, RequestRecord
from routectl.sim.kube_select import parse_field_selector, parse_label_selector
from routectl.sim.kube_store import ApiError, Obj, Store
from routectl.sim.kube_watchgate import Target, WatchDelay, WatchHold

__all__ = ["ApiError", "Fault", "KubeEmulator", "KubeServer", "RequestLog", "RequestRecord", "WatchDelay",
           "WatchHold", "kubeconfig_text", "main"]
T = TypeVar("T")


def kubeconfig_text(url: str, name: str = "routectl-sim") -> str:
    """A kubeconfig for the emulator: plain HTTP, no auth (both kopf's login and the client accept it)."""
    return (f"apiVersion: v1\nkind: Config\npreferences: {{}}\n"
            f"clusters:\n- name: {name}\n  cluster:\n    server: {url}\n"
            f"users:\n- name: {name}\n  user: {{}}\n"
            f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n"
            f"    namespace: default\n"
            f"current-context: {name}\n")


class KubeServer:
    """Runs a :class:`KubeEmulator` on 127.0.0.1 in a background thread with its own event loop.

    Use as a context manager or with :meth:`start` / :meth:`stop`. The helpers (``create``, ``get`` ...)
    are thread-safe: they run on the emulator's loop and bypass HTTP (so they are not in ``requests``).
    Call them from any thread except the emulator's own.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", kubeconfig_path: str | None = None,
                 history_size: int = 10_000) -> None:
        self.host = host
        self._requested_port = port
        self._kubeconfig_path = kubeconfig_path
        self._own_kubeconfig_dir: str | None = None
        self.emulator = KubeEmulator(store=Store(history_size=history_size))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self) -> KubeServer:
        """Bind, start serving and write the kubeconfig; returns self once requests are accepted."""
        if self._thread is not None:
            raise RuntimeError("KubeServer already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(512)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self.emulator.address = f"{self.host}:{self._port}"
        self._thread = threading.Thread(target=self._run, args=(sock,), name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._error is not None:
            raise RuntimeError("the Kubernetes API emulator failed to start") from self._error
        if self._kubeconfig_path is None:
            self._own_kubeconfig_dir = tempfile.mkdtemp(prefix="routectl-kube-")
            self._kubeconfig_path = os.path.join(self._own_kubeconfig_dir, "kubeconfig")
        with open(self._kubeconfig_path, "w", encoding="utf-8") as f:
            f.write(kubeconfig_text(self.url))
        return self

    def stop(self) -> None:
        """Close every watch, stop serving and join the thread (idempotent)."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self.emulator.closing = True
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self._thread = None
        if self._own_kubeconfig_dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._own_kubeconfig_dir, "kubeconfig"))
                os.rmdir(self._own_kubeconfig_dir)

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as e:  # surfaced to start() or logged by the thread machinery
            self._error = e
            self._ready.set()
            raise
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        server = aiohttp.web.Server(self.emulator, handler_cancellation=True, access_log=None)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
        await runner.setup()
        site = aiohttp.web.SockSite(runner, sock)
        await site.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # ------------------------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        """The TCP port actually bound (useful when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("KubeServer not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the API server URL, no TLS, no auth."""
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> str:
        """Where the kubeconfig for this server was written."""
        if self._kubeconfig_path is None:
            raise RuntimeError("KubeServer not started")
        return self._kubeconfig_path

    @property
    def requests(self) -> RequestLog:
        """The HTTP request log (helpers' direct calls are not in it)."""
        return self.emulator.log

    @property
    def store(self) -> Store:
        """The store itself; touch it only through :meth:`call` from other threads."""
        return self.emulator.store

    # -------------------------------------------------------------------------------------- helpers
    def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the emulator's loop and return a deep copy of its result."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("KubeServer not started")
        if threading.current_thread() is self._thread:
            raise RuntimeError("KubeServer helpers cannot be called from the emulator's own thread")

        async def run() -> T:
            return copy.deepcopy(fn(self.emulator.store))

        coro: Coroutine[Any, Any, T] = run()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def read(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the emulator's loop and return its result as is, not copied: for readers
        that build fresh, small results (a digest of 5,000 Nodes deep-copied twice a second loaded the
        emulator's loop). ``fn`` must not return or keep references into the store."""
        return self._on_loop(lambda: fn(self.emulator.store))

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the emulator's loop (directly when already there) and return its result as is."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("KubeServer not started")
        if threading.current_thread() is self._thread:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    # ---------------------------------------------------------------------------- watch lag on demand
    def hold_watch(self, resource: str, name: str | None = None, namespace: str | None = None,
                   group: str | None = None) -> WatchHold:
        """Hold back the watch events of one object (or of every object of ``resource`` when ``name`` is
        None) until ``handle.release(order="fifo"|"reverse"|"shuffled", seed=...)``.

        The store still commits at once (GET/LIST see the change); only watch streams wait. Each object's
        own events keep resourceVersion order (as one real watch stream does) while objects overtake each
        other; see :mod:`routectl.sim.kube_watchgate` for the full semantics and the stale-snapshot option.
        """
        target = Target(resource, name, namespace, group)
        return self._on_loop(lambda: self.store.gate.hold(target, self._on_loop))

    def delay_watch(self, resource: str, max_delay: float, *, seed: int, min_delay: float = 0.0,
                    name: str | None = None, namespace: str | None = None,
                    group: str | None = None) -> WatchDelay:
        """Delay every watch event of the targeted objects by a random ``min_delay..max_delay`` seconds,
        drawn independently per object from ``seed`` (reproducible: ``handle.delays(name)``); per-object
        order is kept. ``handle.stop()`` ends it."""
        target = Target(resource, name, namespace, group)
        return self._on_loop(lambda: self.store.gate.delay(target, min_delay, max_delay, seed, self._on_loop))

    def release_watches(self) -> int:
        """Release every hold, stop every delay and deliver every queued watch event now (for quiescence)."""
        return self._on_loop(self.store.gate.release_all)

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        """Create an object (apiVersion and kind taken from it); raises :class:`ApiError` like HTTP would."""
        def do(s: Store) -> Obj:
            rt = s.find_type(obj["apiVersion"], obj["kind"])
            return s.create(rt, namespace or (obj.get("metadata") or {}).get("namespace"), obj)
        return self.call(do)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        """Fetch one object; raises :class:`ApiError` (code 404) when absent."""
        return self.call(lambda s: s.get(s.find_type(api_version, kind), namespace, name))

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Whether the object exists (including while it waits for its finalizers)."""
        try:
            self.get(api_version, kind, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        return True

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        """List objects with the same selector semantics as the HTTP API."""
        def do(s: Store) -> list[Obj]:
            rt = s.find_type(api_version, kind)
            labels = parse_label_selector(label_selector)
            fields = parse_field_selector(field_selector, rt.plural)
            return s.list(rt, namespace, lambda o: labels(o) and fields(o))
        return self.call(do)

    def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
              content_type: str = "application/merge-patch+json", subresource: str | None = None) -> Obj:
        """Patch the main resource (merge patch by default; .status ignored where it is a subresource)."""
        return self.call(lambda s: s.patch(s.find_type(api_version, kind), namespace, name, content_type,
                                           patch, subresource))

    def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                     content_type: str = "application/merge-patch+json") -> Obj:
        """Patch through /status (only .status changes), e.g. to play the kubelet."""
        return self.patch(api_version, kind, name, patch, namespace, content_type, subresource="status")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        """Delete (or mark for deletion when finalizers remain)."""
        return self.call(lambda s: s.delete(s.find_type(api_version, kind), namespace, name))

    def inject_fault(self, verb: str | None = None, resource: str | None = None, *, code: int = 500,
                     times: int | None = 1, subresource: str | None = "*", name: str | None = None,
                     namespace: str | None = None, reason: str | None = None, message: str = "injected fault",
                     retry_after: int | None = None, user_agent: str | None = None,
                     delay: float = 0.0) -> Fault:
        """Answer matching HTTP requests with an error Status (e.g. 500, 429 + Retry-After, 409) ``times``
        times, after ``delay`` seconds (a hung call), only for clients whose User-Agent contains
        ``user_agent`` when given; the returned :class:`Fault` counts its ``hits``. Nothing is changed
        in the store."""
        default_reason = {409: "Conflict", 429: "TooManyRequests", 503: "ServiceUnavailable",
                          500: "InternalError", 404: "NotFound", 403: "Forbidden"}.get(code, "InternalError")
        fault = Fault(verb=verb, resource=resource, subresource=subresource, name=name, namespace=namespace,
                      code=code, reason=reason or default_reason, message=message, times=times,
                      retry_after=retry_after, user_agent=user_agent, delay=delay)
        return self.emulator.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.emulator.faults.clear()

    def install_kopf_peering_crds(self) -> None:
        """Install kopf's ClusterKopfPeering and KopfPeering CRDs (kopf.dev/v1), for non-standalone kopf."""
        for kind, scope in (("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")):
            plural = f"{kind.lower()}s"
            self.install_crd({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.kopf.dev"},
                "spec": {"group": "kopf.dev", "scope": scope,
                         "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                             "openAPIV3Schema": {"type": "object",
                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}})

    def install_crd(self, crd: Obj) -> Obj:
        """Create (or replace the spec of) a CustomResourceDefinition; its resource is servable at once."""
        def do(s: Store) -> Obj:
            rt = s.find_type("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            name = (crd.get("metadata") or {}).get("name", "")
            if (None, name) in s.objects[rt.key]:
                return s.patch(rt, None, name, "application/merge-patch+json", {"spec": crd.get("spec")})
            return s.create(rt, None, crd)
        return self.call(do)


def main(argv: list[str] | None = None) -> int:
    """``python -m routectl.sim.kube``: serve until SIGTERM/SIGINT; prints one JSON line with the URL."""
    parser = argparse.ArgumentParser(prog="python -m routectl.sim.kube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig")
    parser.add_argument("--crd", action="append", default=[], help="CRD YAML file(s) to install at start")
    args = parser.parse_args(argv)
    import yaml

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with KubeServer(port=args.port, host=args.host, kubeconfig_path=args.kubeconfig) as server:
        for path in args.crd:
            with open(path, encoding="utf-8") as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        server.install_crd(doc)
        print(json.dumps({"url": server.url, "kubeconfig": server.kubeconfig_path}), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
