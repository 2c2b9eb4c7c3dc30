"""The emulator across processes: SIGKILLed watchers, many watchers, and the standalone entry point."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import kubernetes

from routectl.sim.kube import KubeServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
WATCHER = ("import sys, urllib.request\n"
           "r = urllib.request.urlopen(sys.argv[1])\n"
           "print('open', flush=True)\n"
           "for line in r:\n"
           "    print(line.decode().strip(), flush=True)\n")


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def test_survives_sigkilled_watchers_and_serves_many(kube: KubeServer) -> None:
    url = f"{kube.url}/api/v1/nodes?watch=true&allowWatchBookmarks=true"
    procs = [subprocess.Popen([sys.executable, "-c", WATCHER, url], stdout=subprocess.PIPE)
             for _ in range(20)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"open\n"
        wait_for(lambda: kube.call(lambda s: len(s.listeners)) == 20, what="20 watchers registered")
        kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        for p in procs:
            assert p.stdout is not None
            event = json.loads(p.stdout.readline())
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "n1")
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
    wait_for(lambda: kube.call(lambda s: len(s.listeners)) == 0, what="dead watchers cleaned up")
    body = json.loads(urllib.request.urlopen(f"{kube.url}/api/v1/nodes").read())
    assert [n["metadata"]["name"] for n in body["items"]] == ["n1"]


def test_standalone_entry_point_with_crd_and_kopf_login(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "routectl.sim.kube", "--port", "0", "--kubeconfig", str(kubeconfig),
         "--crd", str(ROOT / "crds" / "podcidrpool.yaml")],
        stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["kubeconfig"] == str(kubeconfig) and info["url"].startswith("http://127.0.0.1:")

        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        with client:
            custom = kubernetes.client.CustomObjectsApi(client)
            assert custom.list_cluster_custom_object("routectl.io", "v1alpha1", "podcidrpools")["items"] == []

        # kopf's default login (via the official client) must accept the kubeconfig; it reads $KUBECONFIG
        # when `kubernetes` is first imported, hence a fresh interpreter with the variable set.
        code = ("import logging, kopf\n"
                "info = kopf.login_via_client(logger=logging.getLogger(), settings=kopf.OperatorSettings())\n"
                "print(info.server)\n")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == info["url"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


HANDLERS = '''
import kopf

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.posting.enabled = False

@kopf.on.create("v1", "nodes")
def mark(patch, **_):
    patch.metadata.labels["handled-by"] = "kopf"
'''


def test_kopf_process_sigkilled_and_restarted(kube: KubeServer, tmp_path: pathlib.Path) -> None:
    handlers = tmp_path / "handlers.py"
    handlers.write_text(HANDLERS)
    env = {**os.environ, "KUBECONFIG": kube.kubeconfig_path}
    cmd = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", str(handlers)]

    def labels(name: str) -> dict[str, str]:
        return kube.get("v1", "Node", name)["metadata"].get("labels") or {}

    kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}})
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: labels("a").get("handled-by"), what="node a handled")
        # Let kopf finish its bookkeeping before the kill: its second write records, in the
        # last-handled-configuration annotation, the label its own handler added.
        wait_for(lambda: "handled-by" in (kube.get("v1", "Node", "a")["metadata"].get("annotations") or {})
                 .get("kopf.zalando.org/last-handled-configuration", ""), what="kopf's bookkeeping")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    mark = kube.requests.mark()
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: kube.requests.count(verb="watch", resource="nodes", since=mark) >= 1,
                 what="the restarted operator watching nodes")
        kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}})
        wait_for(lambda: labels("b").get("handled-by"), what="node b handled after restart")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    written = {r.name for r in kube.requests.select(resource="nodes", writes=True, since=mark)}
    assert written == {"b"}  # the node handled before the crash was not written again
