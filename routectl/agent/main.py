"""`routectl agent`: keep this node's egress masquerade rules in line with its podCIDR and the pools."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import click

from routectl.agent import cni
from routectl.agent.cnisync import CniSyncer, CniWriteError, read_primary_mtu
from routectl.agent.iptables import BACKENDS, Iptables, IptablesError, Runner
from routectl.agent.overlay import (
    DEFAULT_DEVICE,
    DEFAULT_PORT,
    DEFAULT_VNI,
    OverlayConfigError,
    OverlaySettings,
    overlay_fallback_for,
)
from routectl.agent.rules import RulesError
from routectl.agent.sync import MasqSyncer, SyncResult, compute_desired
from routectl.agent.sysctl import SysctlError
from routectl.agent.vxlan import OverlayError, OverlayResult, OverlaySync, VxlanSyncer
from routectl.constants import EVENT_CNI_CONFIG_FAILED, EVENT_OVERLAY_FAILED

log = logging.getLogger("routectl.agent")

_DEBOUNCE_SECONDS = 0.2
_STOP_POLL_SECONDS = 0.5


def make_runner(netns: str | None) -> Runner:
    """A Runner for the host, or one that runs every command inside network namespace `netns`."""
    return Runner(prefix=("ip", "netns", "exec", netns) if netns else ())


def cleanup_cni(syncer: CniSyncer) -> str:
    """Remove the agent's CNI config file; a line saying what happened."""
    try:
        removed = syncer.cleanup()
    except (CniWriteError, OSError) as exc:
        return f"CNI config not removed: {exc}"
    return f"removed CNI config {syncer.path}" if removed else f"no CNI config at {syncer.path}"


def cleanup(runner: Runner) -> list[str]:
    """Remove routectl's jump and chain from every backend and family present; what was removed."""
    removed = []
    for backend in BACKENDS:
        if not runner.has(f"iptables-{backend}-restore"):
            continue
        ipt = Iptables(runner=runner, backend=backend)
        for family in (4, 6):
            tool = "iptables" if family == 4 else "ip6tables"
            if runner.has(f"{tool}-{backend}-restore") and ipt.cleanup(family):
                removed.append(f"IPv{family} ({backend})")
    return removed


def make_overlay(device: str, vni: int, port: int, netns: str | None, runner: Runner) -> OverlaySync:
    """The overlay step for the CLI; bad settings are a usage error at start-up."""
    try:
        settings = OverlaySettings(device=device, vni=vni, port=port)
    except OverlayConfigError as exc:
        raise click.BadParameter(str(exc)) from exc
    return OverlaySync(settings, VxlanSyncer(device, netns=netns), lambda: read_primary_mtu(runner))


def cleanup_overlay(syncer: VxlanSyncer) -> str:
    """Delete the agent's VXLAN device (its routes, neighbours and FDB entries go with it); what happened."""
    try:
        removed = syncer.cleanup()
    except (OverlayError, OSError) as exc:
        return f"VXLAN device not removed: {exc}"
    return f"removed VXLAN device {syncer.device}" if removed else f"no VXLAN device {syncer.device}"


class NodeSource(Protocol):
    """Where the agent reads its Node and the pools from (KubeSource in production)."""

    def fetch(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """This node's Node object and every PodCIDRPool, as plain dicts (fresh reads, not a cache)."""
        ...

    def start_watches(self, trigger: threading.Event, stop: threading.Event) -> Any:
        """Start watching the Node and the pools; set `trigger` on every change until `stop` is set."""
        ...

    def list_nodes(self) -> list[dict[str, Any]]:
        """Every Node (read-only, fresh): the overlay routes to the peers that need it."""
        ...

    def stop_watches(self) -> None:
        """Stop the watches started by start_watches (the loop calls it once, on the way out)."""
        ...


@dataclass
class AgentLoop:
    """Sync on start, on every watch event (debounced) and every `resync` seconds."""

    source: NodeSource
    syncer: MasqSyncer
    resync: float = 60.0
    random_fully: bool = True
    cni: CniSyncer | None = None  # None: the cluster brings its own CNI config
    overlay: OverlaySync | None = None  # None: --no-overlay (no VXLAN fallback on this node)

    def sync_once(self) -> SyncResult:
        """Read the Node and pools, apply the masquerade chains, the VXLAN overlay, then the CNI config.

        The CNI config comes second and only once the masquerade rules are in: it is what lets the
        runtime start pods, so no pod starts on a node whose egress would leave un-masqueraded. Forwarding
        that cannot be switched on (read-only /proc/sys) does not hold it back: the rules are in place by
        then, and the bridge plugin turns forwarding on itself for its first pod.
        """
        node, pools = self.source.fetch()
        desired = compute_desired(node, pools, random_fully=self.random_fully)
        fallback = self.overlay is not None and overlay_fallback_for(node, pools)
        try:
            result = self.syncer.sync(desired)
        except SysctlError:
            self._sync_overlay(node, pools)
            if self.cni is not None:
                self.cni.sync(node, overlay=fallback)
            raise
        result.overlay = self._sync_overlay(node, pools)  # before the CNI config: no pod without its path
        if self.cni is not None:
            result.cni = self.cni.sync(node, overlay=fallback)
        cni_state = "off" if result.cni is None else (
            "error" if result.cni.errors else "written" if result.cni.written else "unchanged")
        busy = result.writes or result.errors or (result.cni and (result.cni.written or result.cni.errors)) \
            or (result.overlay and (result.overlay.writes or result.overlay.errors))
        log.log(logging.INFO if busy else logging.DEBUG,
                "sync: families=%s writes=%d errors=%d kept_last_good=%s cni=%s overlay=%s", result.families,
                result.writes, len(result.errors), result.kept_last_good, cni_state,
                "off" if (ov := result.overlay) is None else
                f"peers={ov.peers} writes={ov.writes} errors={len(ov.errors)}")
        return result

    def _sync_overlay(self, node: dict[str, Any], pools: list[dict[str, Any]]) -> OverlayResult | None:
        """The VXLAN overlay from every Node (None when the agent runs with --no-overlay)."""
        if self.overlay is None:
            return None
        return self.overlay.sync(str(node["metadata"]["name"]), self.source.list_nodes, pools)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; failures are logged and retried at the next trigger or resync."""
        trigger = threading.Event()
        self.source.start_watches(trigger, stop)
        while not stop.is_set():
            trigger.clear()
            try:
                self.sync_once()
            except Exception as exc:
                log.error("sync failed: %s", exc)
            deadline = time.monotonic() + self.resync
            while not (stop.is_set() or trigger.is_set()) and time.monotonic() < deadline:
                trigger.wait(min(_STOP_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))
            if stop.is_set():
                break
            time.sleep(_DEBOUNCE_SECONDS)  # coalesce a burst of watch events into one sync
        self.source.stop_watches()


def _cni_settings(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Reject a bad bridge/network/file name at start-up with the renderer's own message."""
    try:
        if param.name == "cni_conf_file":
            cni.validate_conf_file(value)
        elif param.name == "cni_bridge":
            cni.CniSettings(bridge=value)
        elif param.name == "cni_network_name":
            cni.CniSettings(network_name=value)
    except cni.CniConfigError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.command("agent")
@click.option("--node-name", envvar="NODE_NAME", help="This node's name (env NODE_NAME, downward API).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="Kubeconfig file; in-cluster config when omitted.")
@click.option("--resync", type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              help="Seconds between full checks that also repair rules removed by someone else.")
@click.option("--random-fully/--no-random-fully", default=True, show_default=True,
              help="MASQUERADE --random-fully (fully randomised source ports).")
@click.option("--iptables-backend", type=click.Choice(["auto", *BACKENDS]), default="auto",
              show_default=True, help="auto picks the backend the node's rules already use.")
@click.option("--manage-cni/--no-manage-cni", default=True, show_default=True,
              help="Write the node's CNI config (bridge + host-local + portmap) from its podCIDRs; "
                   "--no-manage-cni for clusters that bring their own CNI.")
@click.option("--cni-conf-dir", default=cni.DEFAULT_CONF_DIR, show_default=True,
              help="Directory the container runtime loads CNI configs from.")
@click.option("--cni-conf-file", default=cni.DEFAULT_CONF_FILE, show_default=True, callback=_cni_settings,
              help="File name of routectl's .conflist in --cni-conf-dir (the runtime uses the first in "
                   "lexical order).")
@click.option("--cni-bin-dir", "cni_bin_dirs", multiple=True, default=cni.DEFAULT_BIN_DIRS,
              show_default=True, help="Where the plugin binaries (bridge, host-local, portmap, loopback) "
                                      "are; repeatable. They come from the node image's CNI plugins package.")
@click.option("--cni-mtu", type=click.IntRange(cni.MIN_MTU[4], cni.MAX_MTU), default=None,
              help="Pod interface MTU. Default: the MTU of the node's primary interface (the one with "
                   "the default route).")
@click.option("--cni-bridge", default=cni.DEFAULT_BRIDGE, show_default=True, callback=_cni_settings,
              help="Name of the node bridge the pods attach to (the pods' gateway).")
@click.option("--cni-network-name", default=cni.DEFAULT_NETWORK_NAME, show_default=True,
              callback=_cni_settings, help="CNI network name (also host-local's lease directory name).")
@click.option("--cni-ipam-data-dir", default=None,
              help="host-local's lease directory (its dataDir). Default: host-local's /var/lib/cni/networks.")
@click.option("--overlay/--no-overlay", default=True, show_default=True,
              help="Keep the VXLAN overlay for nodes whose route did not fit the cloud route table (pools "
                   "with routeLimitFallback: Overlay); needs list/watch on Nodes and UDP --overlay-port open "
                   "between nodes.")
@click.option("--overlay-device", default=DEFAULT_DEVICE, show_default=True,
              help="Name of the VXLAN device (the same on every node).")
@click.option("--overlay-vni", type=click.IntRange(1, 0xFFFFFF), default=DEFAULT_VNI,
              show_default=True, help="VXLAN network identifier (the same on every node).")
@click.option("--overlay-port", type=click.IntRange(1, 65535), default=DEFAULT_PORT,
              show_default=True, help="VXLAN UDP port (the same on every node; open it between nodes).")
@click.option("--netns", default=None,
              help="Run iptables, sysctl and ip (the MTU) inside this network namespace (testing).")
@click.option("--cleanup", "do_cleanup", is_flag=True,
              help="Remove routectl's jump and chain and its CNI config file, then exit.")
@click.option("--keep-cni-config", is_flag=True,
              help="With --cleanup: leave the CNI config file in place (pods keep being wired).")
@click.option("--once", is_flag=True, help="Sync once and exit (non-zero on any error).")
@click.option("--log-level", default="INFO", show_default=True)
def agent(node_name: str | None, kubeconfig: str | None, resync: float, random_fully: bool,
          iptables_backend: str, manage_cni: bool, cni_conf_dir: str, cni_conf_file: str,
          cni_bin_dirs: tuple[str, ...], cni_mtu: int | None, cni_bridge: str, cni_network_name: str,
          cni_ipam_data_dir: str | None, overlay: bool, overlay_device: str, overlay_vni: int,
          overlay_port: int, netns: str | None, do_cleanup: bool, keep_cni_config: bool,
          once: bool, log_level: str) -> None:
    """Node agent: masquerade pod egress to the internet (pod-to-pod and pod-to-node stay NAT-less) and
    write the node's CNI config from its podCIDRs."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = make_runner(netns)
    cni_syncer = CniSyncer(
        conf_dir=cni_conf_dir, conf_file=cni_conf_file, bin_dirs=cni_bin_dirs, mtu=cni_mtu, runner=runner,
        settings=cni.CniSettings(network_name=cni_network_name, bridge=cni_bridge,
                                 ipam_data_dir=cni_ipam_data_dir),
    ) if manage_cni else None
    overlay_sync = make_overlay(overlay_device, overlay_vni, overlay_port, netns, runner) if overlay else None
    if do_cleanup:
        removed = cleanup(runner)
        click.echo("removed routectl masquerade rules: " + (", ".join(removed) if removed else "none found"))
        if overlay_sync is not None:
            click.echo(cleanup_overlay(overlay_sync.syncer))
        if cni_syncer is not None and not keep_cni_config:
            click.echo(cleanup_cni(cni_syncer))
        return
    if not node_name:
        raise click.UsageError("--node-name (or env NODE_NAME) is required")
    from routectl.agent.kube import KubeSource, load_api_client  # imports the kubernetes client

    source = KubeSource(load_api_client(kubeconfig), node_name, watch_all_nodes=overlay_sync is not None)
    try:
        ipt = Iptables.detect(runner, iptables_backend)
    except (IptablesError, RulesError) as exc:
        raise click.ClickException(f"cannot use iptables: {exc}") from exc

    def report(message: str) -> None:
        source.record_event(message)

    def report_cni(message: str) -> None:
        source.record_event(message, reason=EVENT_CNI_CONFIG_FAILED)

    if cni_syncer is not None:
        cni_syncer.report = report_cni
    if overlay_sync is not None:
        overlay_sync.syncer.report = lambda message: source.record_event(message, reason=EVENT_OVERLAY_FAILED)
    loop = AgentLoop(source, MasqSyncer(ipt, report=report), resync=resync, random_fully=random_fully,
                     cni=cni_syncer, overlay=overlay_sync)
    if once:
        try:
            result = loop.sync_once()
        except Exception as exc:
            raise click.ClickException(f"sync failed: {exc}") from exc
        if result.errors or (result.cni is not None and result.cni.errors) or (
                result.overlay is not None and result.overlay.errors):
            sys.exit(1)
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loop.run(stop)
