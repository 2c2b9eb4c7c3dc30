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

from routectl.agent.iptables import BACKENDS, Iptables, IptablesError, Runner
from routectl.agent.rules import RulesError
from routectl.agent.sync import MasqSyncer, SyncResult, compute_desired

log = logging.getLogger("routectl.agent")

_DEBOUNCE_SECONDS = 0.2
_STOP_POLL_SECONDS = 0.5


def make_runner(netns: str | None) -> Runner:
    """A Runner for the host, or one that runs every command inside network namespace `netns`."""
    return Runner(prefix=("ip", "netns", "exec", netns) if netns else ())


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


class NodeSource(Protocol):
    """Where the agent reads its Node and the pools from (KubeSource in production)."""

    def fetch(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """This node's Node object and every PodCIDRPool, as plain dicts (fresh reads, not a cache)."""
        ...

    def start_watches(self, trigger: threading.Event, stop: threading.Event) -> Any:
        """Start watching the Node and the pools; set `trigger` on every change until `stop` is set."""
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

    def sync_once(self) -> SyncResult:
        """Read the Node and pools, compute the desired chains and apply them."""
        node, pools = self.source.fetch()
        desired = compute_desired(node, pools, random_fully=self.random_fully)
        result = self.syncer.sync(desired)
        level = logging.INFO if result.writes or result.errors else logging.DEBUG
        log.log(level, "sync: families=%s writes=%d errors=%d kept_last_good=%s", result.families,
                result.writes, len(result.errors), result.kept_last_good)
        return result

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
@click.option("--netns", default=None, help="Run iptables/sysctl inside this network namespace (testing).")
@click.option("--cleanup", "do_cleanup", is_flag=True, help="Remove routectl's jump and chain, then exit.")
@click.option("--once", is_flag=True, help="Sync once and exit (non-zero on any error).")
@click.option("--log-level", default="INFO", show_default=True)
def agent(node_name: str | None, kubeconfig: str | None, resync: float, random_fully: bool,
          iptables_backend: str, netns: str | None, do_cleanup: bool, once: bool, log_level: str) -> None:
    """Node agent: masquerade pod egress to the internet; pod-to-pod and pod-to-node stay NAT-less."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = make_runner(netns)
    if do_cleanup:
        removed = cleanup(runner)
        click.echo("removed routectl masquerade rules: " + (", ".join(removed) if removed else "none found"))
        return
    if not node_name:
        raise click.UsageError("--node-name (or env NODE_NAME) is required")
    from routectl.agent.kube import KubeSource, load_api_client  # imports the kubernetes client

    source = KubeSource(load_api_client(kubeconfig), node_name)
    try:
        ipt = Iptables.detect(runner, iptables_backend)
    except (IptablesError, RulesError) as exc:
        raise click.ClickException(f"cannot use iptables: {exc}") from exc

    def report(message: str) -> None:
        source.record_event(message)

    loop = AgentLoop(source, MasqSyncer(ipt, report=report), resync=resync, random_fully=random_fully)
    if once:
        try:
            result = loop.sync_once()
        except Exception as exc:
            raise click.ClickException(f"sync failed: {exc}") from exc
        if result.errors:
            sys.exit(1)
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loop.run(stop)
