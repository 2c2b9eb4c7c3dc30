"""The controller's allocation book: the pure allocator plus the memory of the podCIDRs we wrote.

One rule decides when an observation may change a holding (issue 9, k8s #29058 / #117487):

* an observation that shows no podCIDR never releases anything (the watch lags our own writes: a node
  we wrote a block to a moment ago still looks empty in the index);
* an observation older than our write (resourceVersion not newer) never replaces what we wrote;
* only `release()` frees a block, and the controller calls it only for a Node that is gone (after its
  routes are deleted), or for a block whose write the API refused for certain;
* before a podCIDR is written, `claim_problem()` confirms that the allocator's holding is the only claim
  on each block; anything else is a bug, reported, never written.

Pure: no I/O and no lock (the controller serialises calls under its allocation lock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from routectl.ipam.allocator import Allocation, Allocator, Finding, NodeCIDRs
from routectl.routes.model import canonical_or_raw


def canon(cidrs: Iterable[str]) -> tuple[str, ...]:
    """Canonical CIDR texts (unparsable ones kept as written)."""
    return tuple(canonical_or_raw(c) for c in cidrs)


def newer(rv: str, than: str) -> bool:
    """True when resourceVersion `rv` is later than `than` (etcd revisions are integers; else: differs)."""
    if rv.isdigit() and than.isdigit():
        return int(rv) > int(than)
    return rv != than


@dataclass(frozen=True)
class Written:
    """podCIDRs we wrote to a Node, the resourceVersion the API answered with, and the Node's uid (a Node
    re-created under the same name is another object: it does not carry what we wrote to the old one)."""

    cidrs: tuple[str, ...]
    resource_version: str
    uid: str = ""


class AllocationBook:
    """Allocator + what we wrote; see the module docstring for the rule."""

    def __init__(self, allocator: Allocator | None = None) -> None:
        self.allocator = allocator or Allocator()
        self.written: dict[str, Written] = {}
        self._writer: dict[str, str] = {}  # canonical CIDR -> node we wrote it to (O(1) claim checks)

    def rebuild(self, nodes: Iterable[NodeCIDRs]) -> list[Finding]:
        """Start-up: occupy every existing podCIDR (complete view) before anything is allocated."""
        self.written.clear()
        self._writer.clear()
        return self.allocator.rebuild(nodes)

    def cidrs_of(self, name: str, observed: tuple[str, ...], uid: str = "") -> tuple[str, ...]:
        """The podCIDRs a node has: what it shows, or what we wrote when the view does not show it yet."""
        if observed:
            return observed
        w = self.written.get(name)
        return w.cidrs if w is not None and (not uid or not w.uid or w.uid == uid) else ()

    def observe(self, name: str, pod_cidrs: Iterable[str], resource_version: str) -> list[Finding] | None:
        """A node was seen with `pod_cidrs` at `resource_version`: record them when they are news.

        Returns None when the observation changes nothing (the same holding, an empty view, or a view
        older than our write), else the findings of the new holding (conflicts, outside every pool...)."""
        cidrs = canon(pod_cidrs)
        if not cidrs:
            return None  # empty never releases: only release() frees a block
        w = self.written.get(name)
        if w is not None and cidrs != w.cidrs and not newer(resource_version, w.resource_version):
            return None  # older than what we wrote
        held = self.allocator.allocation_of(name)
        if held is not None and canon(held.cidrs) == cidrs:
            return None
        return self.allocator.occupy(name, cidrs)

    def allocate(self, name: str, labels: Mapping[str, str]) -> Allocation:
        """A block per family for a node without podCIDRs (idempotent: returns what it holds)."""
        return self.allocator.allocate(name, labels)

    def claim_problem(self, alloc: Allocation) -> str | None:
        """Why writing `alloc` would hand a block out twice (another holder, another written node); None."""
        others = self.allocator.claims(alloc.cidrs) - {alloc.node}
        mine = self.allocator.allocation_of(alloc.node)
        if mine is None or canon(mine.cidrs) != canon(alloc.cidrs):
            return f"node {alloc.node} does not hold {', '.join(alloc.cidrs)} in the allocator"
        writers = {w for c in canon(alloc.cidrs)
                   if (w := self._writer.get(c)) is not None and w != alloc.node}
        if others or writers:
            return (f"{', '.join(alloc.cidrs)} for node {alloc.node} is also claimed by "
                    f"{', '.join(sorted(others | writers))}")
        return None

    def wrote(self, name: str, cidrs: tuple[str, ...], resource_version: str, uid: str = "") -> None:
        """Remember a successful podCIDR write (the watch may bring it back late)."""
        self._forget_written(name)
        self.written[name] = Written(canon(cidrs), resource_version, uid)
        for c in self.written[name].cidrs:
            self._writer[c] = name

    def _forget_written(self, name: str) -> None:
        old = self.written.pop(name, None)
        for c in old.cidrs if old is not None else ():
            if self._writer.get(c) == name:
                del self._writer[c]

    def release(self, name: str) -> Allocation | None:
        """Free a node's blocks: its Node is gone (routes deleted) or the API surely refused the write."""
        self._forget_written(name)
        return self.allocator.release(name)

    def allocation_of(self, name: str) -> Allocation | None:
        """What a node holds, or None."""
        return self.allocator.allocation_of(name)
