"""A small CNI runtime for the dataplane tests: runs a `.conflist`'s real plugin binaries the way a
container runtime does (CNI spec 1.0.0), inside a node's network namespace.

ADD runs the plugins in order, each with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
`CNI_PATH` in its environment and its config on stdin (`name` and `cniVersion` from the list, the
previous plugin's result as `prevResult`, `runtimeConfig` for the capabilities it declares); the last
result is cached. DEL runs them in reverse with the cached result as `prevResult`. A failed ADD is
undone with DEL, as the spec asks. The pod's `lo` is brought up with the loopback plugin, as
containerd does. No Go toolchain, no runtime: just the plugins and this file.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.dataplane.netns import CNI_PLUGIN_DIR, Netns

PLUGIN_DIR = CNI_PLUGIN_DIR
LOOPBACK = {"cniVersion": "1.0.0", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}


class CniError(RuntimeError):
    """A plugin failed; carries the CNI error object (code, msg, details) when it printed one."""


@dataclass
class Attachment:
    """One pod's network: namespace, container ID, final ADD result, the conflist and runtime config used."""

    pod: Netns
    container_id: str
    result: dict[str, Any]
    conflist: dict[str, Any]
    runtime_config: dict[str, Any] = field(default_factory=dict)

    def addresses(self, family: int) -> list[str]:
        """The pod's addresses of `family` from the result (no prefix length)."""
        out = []
        for ip in self.result.get("ips", []):
            addr = ip["address"].split("/")[0]
            if (":" in addr) == (family == 6):
                out.append(addr)
        return out

    @property
    def host_interfaces(self) -> list[str]:
        """Interfaces the result names outside the pod (the bridge and the pod's host-side veth)."""
        return [i["name"] for i in self.result.get("interfaces", []) if not i.get("sandbox")]


def _plugin_config(conflist: Mapping[str, Any], plugin: Mapping[str, Any], prev: dict[str, Any] | None,
                   runtime_config: Mapping[str, Any]) -> dict[str, Any]:
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    caps = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
    runtime = {k: v for k, v in runtime_config.items() if k in caps}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev is not None:
        conf["prevResult"] = prev
    return conf


@dataclass
class CniRuntime:
    """Runs plugins from `plugin_dir` inside `node`'s namespace; remembers attachments until DEL."""

    node: Netns
    plugin_dir: str = PLUGIN_DIR
    attachments: list[Attachment] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (command, plugin type) in call order

    def _exec(self, command: str, plugin_type: str, conf: Mapping[str, Any], pod: Netns, container_id: str,
              ifname: str) -> dict[str, Any] | None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/run/netns/{pod.name}",
            "CNI_IFNAME": ifname,
            "CNI_PATH": self.plugin_dir,
        }
        self.calls.append((command, plugin_type))
        proc = subprocess.run([*self.node.prefix, str(Path(self.plugin_dir) / plugin_type)],
                              input=json.dumps(conf), capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        if proc.returncode != 0:
            try:
                err = json.loads(proc.stdout)
            except json.JSONDecodeError:
                err = {"msg": proc.stdout.strip()}
            raise CniError(f"{plugin_type} {command} failed ({proc.returncode}): {err} {proc.stderr.strip()}")
        out = proc.stdout.strip()
        return json.loads(out) if out else None

    def add(self, conflist_path: Path, pod: Netns, runtime_config: Mapping[str, Any] | None = None,
            container_id: str | None = None) -> Attachment:
        """Wire `pod` with the conflist at `conflist_path` (read now, as a runtime reads it per pod)."""
        conflist = json.loads(conflist_path.read_text())
        cid = container_id or secrets.token_hex(16)
        runtime = dict(runtime_config or {})
        self._run_list(LOOPBACK, "ADD", pod, cid, "lo", {})
        try:
            result = self._run_list(conflist, "ADD", pod, cid, "eth0", runtime)
        except CniError:
            self._del_list(conflist, pod, cid, None, runtime)
            raise
        assert result is not None, "the plugin chain returned no result"
        att = Attachment(pod, cid, result, conflist, runtime)
        self.attachments.append(att)
        return att

    def _run_list(self, conflist: Mapping[str, Any], command: str, pod: Netns, cid: str, ifname: str,
                  runtime: Mapping[str, Any]) -> dict[str, Any] | None:
        prev: dict[str, Any] | None = None
        for plugin in conflist["plugins"]:
            conf = _plugin_config(conflist, plugin, prev, runtime)
            prev = self._exec(command, plugin["type"], conf, pod, cid, ifname) or prev
        return prev

    def _del_list(self, conflist: Mapping[str, Any], pod: Netns, cid: str, cached: dict[str, Any] | None,
                  runtime: Mapping[str, Any]) -> None:
        for plugin in reversed(conflist["plugins"]):
            conf = _plugin_config(conflist, plugin, cached, runtime)
            self._exec("DEL", plugin["type"], conf, pod, cid, "eth0")

    def delete(self, att: Attachment) -> None:
        """DEL the pod's attachment: plugins in reverse order, with the cached ADD result."""
        self._del_list(att.conflist, att.pod, att.container_id, att.result, att.runtime_config)
        self._exec("DEL", "loopback", _plugin_config(LOOPBACK, LOOPBACK["plugins"][0], None, {}),
                   att.pod, att.container_id, "lo")
        self.attachments.remove(att)

    def delete_all(self) -> list[str]:
        """DEL every attachment still there (newest first); the errors met."""
        errors = []
        for att in reversed(list(self.attachments)):
            try:
                self.delete(att)
            except CniError as exc:
                errors.append(str(exc))
        return errors

