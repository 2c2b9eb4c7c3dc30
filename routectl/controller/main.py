"""`routectl controller`: serve liveness and metrics, win the leader Lease, then run the controller.

`run_controller()` is the one code path, shared by the CLI command and the in-process simulator
(routectl.sim.cluster): a standby controller serves /healthz and waits for the Lease; the leader runs
its informers (and kopf, for pool deletions) until it is stopped (SIGTERM/SIGINT or the `stop` event;
then it releases the Lease) or loses the Lease (then it stops acting at once and exits non-zero so that
its supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import click
from aiohttp import web

from routectl import __version__
from routectl.cloud.sdk import sdk_imports
from routectl.controller.config import ENV_VARS, Config, load_config
from routectl.controller.kube import KubeClient, load_credentials
from routectl.controller.leader import lease_client
from routectl.controller.leasethread import LeaseThread, WatchedElector
from routectl.controller.metrics import Metrics
from routectl.controller.nodecache import NodeCache, PoolCache
from routectl.controller.reconcile import Controller, RoutesFactory

log = logging.getLogger(__name__)

EXIT_LOST_LEASE = 3


def build_routes(config: Config, cluster_cidrs: list[str], warn_percent: int) -> Any:
    """The configured cloud's driver wrapped in the route reconciler, for the pools' CIDRs."""
    from routectl.cloud.factory import make_driver
    from routectl.cloud.reconcile import RouteReconciler

    driver = make_driver(config.provider, cluster_cidrs=cluster_cidrs, **config.driver_settings())
    return RouteReconciler(driver, cluster_cidrs, warn_percent=warn_percent, concurrency=config.concurrency)


# The cloud SDK modules the driver imports on its first call: google-cloud-compute alone takes 1-3 s to
# import, which a new leader paid between listing every Node and handing out the first block. Only the
# configured provider's SDK is ever imported (the other one costs tens of MB of resident memory).
_SDK_WARMERS = {"gce": ("routectl.cloud.sdk", "warm_gce"), "aws": ("boto3", None)}


def warm_cloud_sdk(provider: str | None) -> None:
    """Import the provider's SDK (in a thread: see run_controller)."""
    import importlib

    module, func = _SDK_WARMERS.get(provider or "", (None, None))
    if module is None:
        return
    try:
        with sdk_imports():  # never beside a driver's own first imports (routectl.cloud.sdk)
            mod = importlib.import_module(module)
            if func is not None:
                getattr(mod, func)()
    except ImportError:  # the driver reports a missing SDK itself, with advice
        log.debug("cloud SDK of %s not importable", provider)


def freeze_imports() -> None:
    """Move every object alive now (modules, classes, protobuf descriptors: some 200,000) out of the
    cyclic collector's sight for good. They live as long as the process, yet each full collection
    walked them all: ~0.1 s of CPU, about every other resync at 5,000 routes."""
    gc.collect()
    gc.freeze()


def make_login(kubeconfig: str | None) -> Callable[..., Any]:
    """A kopf login handler for the same cluster the write client talks to."""
    def login(**_: Any) -> Any:
        import kopf

        creds = load_credentials(kubeconfig)
        scheme = token = None
        if creds.token:
            scheme, _, token = creds.token.partition(" ")
        return kopf.ConnectionInfo(server=creds.host, ca_path=creds.ca_path, insecure=not creds.verify,
                                   certificate_path=creds.cert_file, private_key_path=creds.key_file,
                                   scheme=scheme or None, token=token or None, default_namespace="default")
    return login


class HealthServer:
    """/healthz (the process and its loop answer), /readyz (leader and synced), /metrics (Prometheus)."""

    def __init__(self, metrics: Metrics, ready: Callable[[], bool], host: str, port: int, *,
                 metrics_public: bool = False, healthy: Callable[[], bool] = lambda: True) -> None:
        self.metrics = metrics
        self.metrics_public = metrics_public
        self.ready = ready
        self.healthy = healthy  # False once a background loop is dead: the kubelet restarts the pod
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Start serving; return the bound port."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        if not self.healthy():
            return web.Response(text="a background loop is dead (see the log)\n", status=500)
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        ok = self.ready()
        return web.Response(text="ready\n" if ok else "standby\n", status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.metrics_public and request.remote not in ("127.0.0.1", "::1"):
            return web.Response(status=403, text="/metrics answers loopback clients only (hostNetwork); set "
                                "ROUTECTL_METRICS_PUBLIC=true or scrape through the node's loopback\n")
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")


async def run_controller(config: Config, *, routes_factory: RoutesFactory | None = None,
                         stop: asyncio.Event | None = None,
                         on_controller: Callable[[Controller], None] | None = None,
                         health: bool = True, freeze: bool = False) -> int:
    """Run until stopped (returns 0) or until the Lease is lost (returns EXIT_LOST_LEASE). `freeze`: the
    process is the controller's own (`routectl controller`): freeze what the start-up imported."""
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        # SIGTERM/SIGINT before kopf runs (standby, start-up) stop cleanly; kopf installs its own later.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    # The cloud SDK is imported in a thread (google-cloud-compute: 1.5 s of CPU and more): by a standby
    # while it waits for the Lease, by a leader once its first blocks are on their way (before that, the
    # import would take the CPU from them; the first route sync needs it right after).
    warming: list[asyncio.Task[None]] = []

    def import_sdk() -> None:
        warm_cloud_sdk(config.provider)
        if freeze:
            freeze_imports()

    def warm() -> None:
        if not warming:
            warming.append(asyncio.create_task(asyncio.to_thread(import_sdk), name="routectl-warm-sdk"))

    holder: list[Controller] = []

    def cloud_stats() -> Any:
        driver = getattr(holder[0].routes, "driver", None) if holder else None
        return driver.calls.snapshot() if driver is not None else None

    metrics = Metrics(cloud_stats)
    # The identity in the User-Agent tells in API audit logs which replica wrote what.
    agent = f"routectl/{__version__} ({config.identity})"
    client = KubeClient.from_config(config.kubeconfig, user_agent=agent)
    factory = routes_factory or (lambda cidrs, warn: build_routes(config, cidrs, warn))
    controller = Controller(config, client, factory, metrics=metrics)
    controller.on_serving = warm
    holder.append(controller)
    if on_controller is not None:
        on_controller(controller)

    def on_change(lead: bool) -> None:
        metrics.leader.set(1 if lead else 0)
        if not lead:  # fenced at once: no handler still running may write a podCIDR or touch the cloud
            controller.fence()
            client.fence(elector.path)

    # The Lease has a client, a loop and a thread of its own: renewals never queue behind the work
    # client's requests nor wait for the controller's loop (routectl.controller.leasethread).
    elector_client = lease_client(config.kubeconfig, config.identity, config.renew_deadline)
    elector = WatchedElector(elector_client, config.lease_namespace, config.lease_name, config.identity,
                             lease_duration=config.lease_duration, renew_deadline=config.renew_deadline,
                             retry_period=config.retry_period, on_change=on_change)
    lease = LeaseThread(elector, stall_limit=config.lease_duration)
    lease.start()
    server = HealthServer(metrics, lambda: elector.is_leader and controller.ready,
                          config.health_host, config.health_port, metrics_public=config.metrics_public,
                          healthy=lambda: controller.healthy)
    if health:
        port = await server.start()
        controller.health_port = port
        log.info("serving /healthz, /readyz and /metrics on %s:%d", config.health_host, port)
    lost = False
    try:
        if config.leader_elect:
            acquire = asyncio.create_task(lease.run(elector.acquire))
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({acquire, stopped}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # a standby: time to import the SDK
                warm()
                await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for t in (acquire, stopped):
                t.cancel()
            if stop.is_set():
                return 0
        # Nodes and pools through routectl's own informers (routectl.controller.nodecache); kopf, for the
        # pool deletion handler only, starts once the controller is ready: its import and start-up would
        # otherwise compete for the CPU with the first blocks (routectl.controller.handlers)
        kopf_stop = asyncio.Event()
        informers = asyncio.create_task(controller.run(NodeCache(client), PoolCache(client)),
                                        name="routectl-informers")
        operator = asyncio.create_task(_kopf_when_ready(controller, config, kopf_stop), name="routectl-kopf")
        watchers = {operator, informers, asyncio.create_task(stop.wait())}
        holding = asyncio.create_task(lease.run(elector.hold)) if config.leader_elect else None
        if holding is not None:
            watchers.add(holding)
        done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        lost = holding is not None and holding in done
        if lost:
            log.error("leader lease lost: stopping at once")
        kopf_stop.set()
        informers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await informers
        await controller.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(operator, timeout=10)
        for t in watchers:
            t.cancel()
        for task in (operator, informers):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in warming:
            with contextlib.suppress(Exception):
                await task
        await controller.close()
        if config.leader_elect and not lost:
            await lease.run(elector.release)
        await server.stop()
        await client.close()
        await lease.stop()
    return EXIT_LOST_LEASE if lost else 0


async def _kopf_when_ready(controller: Controller, config: Config, stop_flag: asyncio.Event) -> None:
    """Run the kopf operator (the pool deletion handler and its finalizer) once the controller is ready
    (returns at once when stopped before that)."""
    waits = {asyncio.create_task(controller.wait_ready()), asyncio.create_task(stop_flag.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:
            t.cancel()
    if stop_flag.is_set():
        return
    import kopf

    from routectl.controller.handlers import build_registry, configure_settings

    await kopf.operator(registry=build_registry(controller, login=make_login(config.kubeconfig)),
                        settings=configure_settings(), clusterwide=True, standalone=True, stop_flag=stop_flag)


def _env_help(name: str) -> str:
    """The option's env var and, when it has one, its default (from Config, the single source)."""
    fld = next(f for f in fields(Config) if f.name == name)
    default = fld.default
    shown = "" if default is MISSING or default in (None, "", ()) else \
        f"; default: {str(default).lower() if isinstance(default, bool) else default}"
    return f"[env {ENV_VARS[name]}{shown}]"


@click.command("controller")
@click.option("--cluster-name", help=f"Cluster name, prefixes cloud route names. {_env_help('cluster_name')}")
@click.option("--provider", type=click.Choice(["gce", "aws"]),
              help=f"Cloud provider (required). {_env_help('provider')}")
@click.option("--kubeconfig", help="Kubeconfig file (default: in-cluster service account or $KUBECONFIG).")
@click.option("--gce-project", help=f"GCE project. {_env_help('gce_project')}")
@click.option("--gce-network", help=f"GCE network name. {_env_help('gce_network')}")
@click.option("--gce-endpoint", help=f"Compute API endpoint (fake server). {_env_help('gce_endpoint')}")
@click.option("--aws-region", help=f"AWS region. {_env_help('aws_region')}")
@click.option("--aws-route-table-id", "aws_route_table_ids", multiple=True,
              help=f"Route table to program (repeatable). {_env_help('aws_route_table_ids')} (comma list)")
@click.option("--aws-endpoint", help=f"EC2 endpoint URL (moto). {_env_help('aws_endpoint')}")
@click.option("--resync-seconds", type=float, help=f"Full route resync period. {_env_help('resync_seconds')}")
@click.option("--cloud-rate", type=float,
              help=f"Mutating cloud calls per second (default per provider: aws 4, gce 20). "
                   f"{_env_help('cloud_rate')}")
@click.option("--cloud-burst", type=int,
              help=f"Mutating cloud call burst (default per provider: aws 40, gce 50). "
                   f"{_env_help('cloud_burst')}")
@click.option("--quota-recheck-seconds", type=float,
              help=f"Re-read the route quota this often while a table is full (nodes wait or ride the "
                   f"overlay). "
                   f"{_env_help('quota_recheck_seconds')}")
@click.option("--concurrency", type=int, help=f"Cloud operations in flight. {_env_help('concurrency')}")
@click.option("--health-address", help=f"HOST:PORT of /healthz and /metrics. {_env_help('health_address')}")
@click.option("--leader-elect/--no-leader-elect", default=None,
              help=f"Lease-based leader election (default on). {_env_help('leader_elect')}")
@click.option("--lease-name", help=f"Lease name. {_env_help('lease_name')}")
@click.option("--lease-namespace",
              help=f"Lease namespace (in a pod: its own namespace). {_env_help('lease_namespace')}")
@click.option("--metrics-public/--no-metrics-public", default=None,
              help=f"Serve /metrics to non-loopback clients too. {_env_help('metrics_public')}")
@click.option("--lease-duration", type=float, help=f"Lease duration, seconds. {_env_help('lease_duration')}")
@click.option("--renew-deadline", type=float, help=f"Renew deadline, seconds. {_env_help('renew_deadline')}")
@click.option("--retry-period", type=float, help=f"Lease retry period, seconds. {_env_help('retry_period')}")
@click.option("--identity", help=f"Leader identity (default: host name + random). {_env_help('identity')}")
@click.option("--event-namespace", help=f"Namespace of Node/pool Events. {_env_help('event_namespace')}")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def controller(log_level: str, **flags: Any) -> None:
    """Run the controller: allocate pod CIDRs to Nodes, program cloud routes, report on Nodes and pools."""
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.upper() != "DEBUG":  # kopf logs every handled Node event at INFO: too chatty for a fleet
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        config = load_config(flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # Terminated while still importing: nothing was done yet, exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    code = asyncio.run(run_controller(config, freeze=True))
    sys.exit(code)
