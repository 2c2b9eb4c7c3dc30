"""Pool-aware node CIDR allocator: which pool serves a node, which block(s) it gets, what is held by whom.

Usage by the controller (one instance, serialised by one lock; pure, no I/O)::

    alloc = Allocator()
    problems = alloc.set_pools(PoolSpec.from_resource(o) for o in pools)   # {pool: [messages]}
    findings = alloc.rebuild(NodeCIDRs(n.name, n.pod_cidrs, n.labels) for n in nodes)  # BEFORE allocating
    a = alloc.allocate("node-1", {"zone": "a"})   # Allocation(node, pool, cidrs) -> write Node.spec.podCIDRs
    alloc.release("node-1")                      # only after the node's routes are gone

Rules:

* Node.spec.podCIDRs is the source of truth. `rebuild` replaces the whole picture with the nodes
  given (occupying every existing podCIDR before anything is allocated: k8s #29058). Nodes are taken
  in name order; when two nodes overlap the first by name "wins" and the other gets an ``overlap``
  finding. A node that already holds CIDRs is *never* given new ones: `allocate` returns what it
  holds (idempotent), even if that is outside every pool or in conflict (findings report those).
* Conflicting or misaligned holdings still keep every block they touch occupied (reference counted
  per block), so nothing overlapping them is handed out while any holder remains.
* Pool choice (`select_pool`): among pools whose nodeSelector matches the labels and that are not
  wholly invalid, the most specific selector (most keys) wins, then the pool name (ascending).
  `allocate` tries the pools in that order and takes the first with room for every family it serves.
* Dual-stack: a pool with IPv4 and IPv6 CIDRs gives one block per family, in the order the families
  first appear in spec.cidrs (the first is the primary podCIDR); if one family has no room, nothing
  is taken.
* Reconfiguration (`set_pools`): occupancy survives (every holding is replayed into the new sets, the
  round-robin cursor of an unchanged CIDR is kept); appended CIDRs serve at once; a CIDR with a
  problem, or a pool with a pool-wide problem, serves nothing new; a removed pool's holdings stay and
  are reported under the removed pool's name by every set_pools call while held (see `orphans`).
  Overlap blame uses CIDR age: a CIDR seen in an earlier configuration is older than one that
  appears later (see routectl.ipam.validate).
* Adding a family to a pool (e.g. an IPv6 CIDR to an IPv4 pool) makes *new* nodes dual-stack;
  nodes that already hold blocks keep exactly what they hold (allocate is idempotent).
* Reserved ranges (spec.reservedCIDRs) are never handed out; a node holding one gets an ``overlap``
  finding.

Finding kinds: ``overlap`` (with another node or a reserved range), ``outside`` (inside no usable pool
CIDR), ``misaligned`` (inside a pool CIDR but not one node block of it), ``invalid`` (unparsable, host
bits set, or a wrong family mix such as two IPv4 podCIDRs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from routectl.ipam.cidrset import CidrSet
from routectl.ipam.errors import CIDRExhaustedError, InvalidCIDRError, NoMatchingPoolError
from routectl.ipam.model import PoolSpec
from routectl.ipam.netutil import IntCIDR, Network, fast_parse, int_cidr, parse_cidr
from routectl.ipam.validate import check_pools, default_order_key

FINDING_KINDS = ("overlap", "outside", "misaligned", "invalid")


@dataclass(frozen=True)
class NodeCIDRs:
    """A node as the allocator sees it: name, existing podCIDRs (may be empty) and labels."""

    name: str
    pod_cidrs: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """A conflict found while occupying existing podCIDRs; `kind` is one of FINDING_KINDS."""

    node: str
    cidr: str
    kind: str
    message: str


@dataclass(frozen=True)
class Allocation:
    """The CIDRs a node holds (primary first); `pool` is "" when they lie in no configured pool."""

    node: str
    pool: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class PoolUsage:
    """Per-pool counts in *nodes*: capacity/free are how many nodes the serving CIDRs can take in all/more.

    For a dual-stack pool they are the minimum over the two families. `nodes` is sorted.
    """

    pool: str
    allocated: int
    capacity: int
    free: int
    nodes: tuple[str, ...]


def _overlap(a: IntCIDR, b: IntCIDR) -> bool:
    return a[0] == b[0] and a[1] <= b[2] and b[1] <= a[2]


# A held CIDR: its canonical text and its IntCIDR (version, first, last, prefix length).
_Held = tuple[str, IntCIDR]


@dataclass
class _Pool:
    spec: PoolSpec
    valid: bool  # no pool-wide problem
    sets: list[tuple[int, CidrSet, bool]]  # (index in spec.cidrs, set, serving)


class Allocator:
    """Holds pools and per-node holdings; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._pools: dict[str, _Pool] = {}
        self._ranked: list[str] = []  # pool names, most specific selector first, then name
        self._sets: dict[tuple[Network, int], CidrSet] = {}
        self._reserved_by_set: dict[tuple[Network, int], list[Network]] = {}
        self._holdings: dict[str, tuple[_Held, ...]] = {}
        self._blocks_of: dict[str, list[tuple[CidrSet, int]]] = {}
        self._owners: dict[tuple[int, int], set[str]] = {}  # (id(set), block index) -> holders
        self._cidr_age: dict[tuple[str, str], int] = {}
        self._age_seq = 0
        self._removed: dict[str, list[IntCIDR]] = {}  # removed pools' CIDRs, while nodes still hold blocks
        self.last_findings: list[Finding] = []

    # ------------------------------------------------------------------ configuration
    def set_pools(self, specs: Iterable[PoolSpec]) -> dict[str, list[str]]:
        """(Re)configure the pools; return problems per pool name ([] = valid). Holdings survive."""
        specs = sorted(specs, key=default_order_key)
        for spec in specs:  # give never-seen CIDRs an age, oldest pools first
            for c in spec.cidrs:
                if (spec.name, c) not in self._cidr_age:
                    self._cidr_age[(spec.name, c)] = self._age_seq
                    self._age_seq += 1
        problems = check_pools(specs, lambda s, i: (self._cidr_age[(s.name, s.cidrs[i])], s.name, i))
        out: dict[str, list[str]] = {s.name: [] for s in specs}
        bad_pools: set[str] = set()
        bad_cidrs: set[tuple[str, int]] = set()
        for p in problems:
            out.setdefault(p.pool, []).append(p.message)
            if p.cidr_index is None:
                bad_pools.add(p.pool)
            else:
                bad_cidrs.add((p.pool, p.cidr_index))

        old_sets = self._sets
        old_pools = self._pools
        self._sets = {}
        self._reserved_by_set = {}
        self._pools = {}
        for spec in specs:
            if spec.name in self._pools:
                continue  # duplicate name: reported by check_pools
            entries: list[tuple[int, CidrSet, bool]] = []
            for i, raw in enumerate(spec.cidrs):
                try:
                    net = parse_cidr(raw)
                    key = (net, spec.mask_for(net.version))
                    cset = self._sets.get(key)
                    if cset is None:
                        cset = CidrSet(net, key[1])
                        if key in old_sets:
                            cset.next_candidate = old_sets[key].next_candidate
                        self._sets[key] = cset
                except InvalidCIDRError:
                    continue  # reported by check_pools; nothing can be tracked in it
                for r in spec.reserved:
                    try:
                        self._reserved_by_set.setdefault(key, []).append(parse_cidr(r))
                    except InvalidCIDRError:
                        continue
                serving = spec.name not in bad_pools and (spec.name, i) not in bad_cidrs
                entries.append((i, cset, serving))
            self._pools[spec.name] = _Pool(spec, spec.name not in bad_pools, entries)
        self._ranked = sorted(self._pools, key=lambda n: (-len(self._pools[n].spec.node_selector), n))
        self.last_findings = self._occupy_all({n: [h[0] for h in v] for n, v in self._holdings.items()})

        for name in set(old_pools) - set(self._pools):
            self._removed[name] = [int_cidr(cset.cidr) for _, cset, _ in old_pools[name].sets]
        for name in sorted(self._removed):
            held = [
                f"{node} ({', '.join(h[0] for h in nets)})"
                for node, nets in sorted(self._holdings.items())
                if self._pool_name(nets) == ""
                and any(_overlap(h[1], r) for r in self._removed[name] for h in nets)
            ]
            if name in self._pools or not held:
                del self._removed[name]  # re-created, or nobody holds its blocks any more
                continue
            out[name] = [
                f"pool {name} was removed but nodes still hold its blocks (kept occupied): " + "; ".join(held)
            ]
        return out

    def _occupy_all(self, holdings: Mapping[str, list[str]]) -> list[Finding]:
        """Apply reserved ranges, then every holding (name order), to the current (fresh) bitmaps."""
        for key, nets in self._reserved_by_set.items():
            for net in nets:
                self._sets[key].reserve(net)
        self._holdings = {}
        self._blocks_of = {}
        self._owners = {}
        findings: list[Finding] = []
        for node in sorted(holdings):
            findings.extend(self._hold(node, holdings[node]))
        return findings

    @property
    def pools(self) -> dict[str, PoolSpec]:
        """The configured pool specs by name."""
        return {n: p.spec for n, p in self._pools.items()}

    # ------------------------------------------------------------------ occupancy
    def rebuild(self, nodes: Iterable[NodeCIDRs]) -> list[Finding]:
        """Forget all holdings and occupy the podCIDRs of `nodes` (first by name wins); return findings."""
        pending = {n.name: list(n.pod_cidrs) for n in nodes if n.pod_cidrs}
        for key, cset in list(self._sets.items()):
            fresh = CidrSet(cset.cidr, cset.mask)
            fresh.next_candidate = cset.next_candidate
            self._sets[key] = fresh
        for pool in self._pools.values():
            pool.sets = [(i, self._sets[(c.cidr, c.mask)], s) for i, c, s in pool.sets]
        self.last_findings = self._occupy_all(pending)
        return list(self.last_findings)

    def occupy(self, node: str, cidrs: Iterable[str]) -> list[Finding]:
        """Record that `node` holds `cidrs` (Node.spec.podCIDRs is the truth: replaces what it held).

        An empty list changes nothing: seeing no podCIDR is no proof that a node gave its block up (the
        view may predate our write); only `release` frees a block."""
        cidrs = [c for c in cidrs if c]
        if not cidrs:
            return []
        current = self._holdings.get(node)
        if current is not None and [h[0] for h in current] == cidrs:
            return []
        if current is not None:
            self.release(node)
        return self._hold(node, cidrs)

    def claims(self, cidrs: Iterable[str]) -> set[str]:
        """Every holder (node or placeholder) of any block that `cidrs` touch, in any pool CIDR (every
        holding marks each block it touches in every set, so this sees overlaps across pools too)."""
        out: set[str] = set()
        for raw in cidrs:
            ints = fast_parse(raw) if isinstance(raw, str) else None
            if ints is None:
                try:
                    ints = int_cidr(parse_cidr(raw))
                except InvalidCIDRError:
                    continue
            for cset in self._sets.values():
                sid = id(cset)
                for i in cset.overlapping_ints(ints):
                    out |= self._owners.get((sid, i), set())
        return out

    @staticmethod
    def _parse_held(node: str, raw: object, findings: list[Finding]) -> _Held | None:
        """Parse one podCIDR; malformed ones become findings (host bits set: the network is kept)."""
        if isinstance(raw, str):
            fast = fast_parse(raw)
            if fast is not None:
                return (raw, fast)
        try:
            net = parse_cidr(raw, f"podCIDR of node {node}")
            return (str(net), int_cidr(net))
        except InvalidCIDRError as exc:
            try:
                loose = ipaddress.ip_network(str(raw).strip(), strict=False)
            except ValueError:
                findings.append(Finding(node, str(raw), "invalid", f"{exc}; it is ignored by IPAM"))
                return None
            findings.append(Finding(node, str(raw), "invalid", f"{exc}; {loose} is kept occupied for safety"))
            return (str(loose), int_cidr(loose))

    def _hold(self, node: str, cidrs: list[str]) -> list[Finding]:
        """Mark every block touched by `cidrs` as held by `node`; report problems as findings."""
        findings: list[Finding] = []
        held = [h for raw in cidrs if (h := self._parse_held(node, raw, findings)) is not None]
        fams = [h[1][0] for h in held]
        if len(held) > 2 or len(set(fams)) != len(fams):
            text = ", ".join(h[0] for h in held)
            findings.append(
                Finding(
                    node,
                    ",".join(h[0] for h in held),
                    "invalid",
                    f"node {node} has podCIDRs {text}: at most one IPv4 and one IPv6 CIDR are allowed; "
                    "all are kept occupied",
                )
            )
        blocks: list[tuple[CidrSet, int]] = []
        owners_map = self._owners
        for text, ints in held:
            touched = aligned = reserved_hit = False
            clashes: set[str] = set()
            for cset in self._sets.values():
                idx = cset.overlapping_ints(ints)
                if not idx:
                    continue
                touched = True
                if len(idx) == 1 and ints == cset.block_ints(idx[0]):
                    aligned = True
                sid = id(cset)
                for i in idx:
                    owners = owners_map.get((sid, i))
                    if owners is None:
                        if cset.is_used_index(i) and cset.is_reserved_index(i):
                            reserved_hit = True
                        owners_map[(sid, i)] = {node}
                    else:
                        clashes |= owners - {node}
                        owners.add(node)
                    cset.occupy_index(i)
                    blocks.append((cset, i))
            if not touched:
                findings.append(
                    Finding(
                        node,
                        text,
                        "outside",
                        f"{text} of node {node} is inside no pool CIDR; it stays assigned",
                    )
                )
            elif not aligned:
                findings.append(
                    Finding(
                        node,
                        text,
                        "misaligned",
                        f"{text} of node {node} is not one node block of the pool CIDR(s) it touches; every "
                        "block it overlaps is kept occupied",
                    )
                )
            if clashes:
                others = ", ".join(sorted(clashes))
                findings.append(
                    Finding(
                        node,
                        text,
                        "overlap",
                        f"{text} of node {node} overlaps a block already held by {others} (first by name "
                        "keeps it); both stay occupied until fixed by hand",
                    )
                )
            if reserved_hit:
                findings.append(
                    Finding(
                        node, text, "overlap", f"{text} of node {node} overlaps a reserved range of its pool"
                    )
                )
        if held:  # a node whose podCIDRs are all unparsable holds nothing (the findings say why)
            self._holdings[node] = tuple(held)
            self._blocks_of[node] = blocks
        return findings

    def release(self, node: str) -> Allocation | None:
        """Forget `node`'s holding and free the blocks nobody else holds; return what it held."""
        held = self._holdings.pop(node, None)
        if held is None:
            return None
        for cset, i in self._blocks_of.pop(node, []):
            key = (id(cset), i)
            owners = self._owners.get(key)
            if owners is not None:
                owners.discard(node)
                if not owners:
                    del self._owners[key]
                    cset.release_index(i)
        return self._allocation(node, held)

    def _allocation(self, node: str, held: tuple[_Held, ...]) -> Allocation:
        return Allocation(node, self._pool_name(held), tuple(h[0] for h in held))

    # ------------------------------------------------------------------ allocation
    def _matching(self, labels: Mapping[str, str]) -> list[_Pool]:
        return [p for n in self._ranked if (p := self._pools[n]).valid and p.spec.matches(labels)]

    def select_pool(self, labels: Mapping[str, str]) -> PoolSpec | None:
        """The best valid pool for `labels`: most specific matching selector, then name; None if none."""
        pools = self._matching(labels)
        return pools[0].spec if pools else None

    def allocate(self, node: str, labels: Mapping[str, str] | None = None) -> Allocation:
        """Give `node` one block per family of its pool, or return what it already holds (idempotent).

        Call it for nodes without podCIDRs; nodes with podCIDRs are recorded with `rebuild`/`occupy`.
        """
        held = self._holdings.get(node)
        if held is not None:
            return self._allocation(node, held)
        pools = self._matching(labels or {})
        if not pools:
            raise NoMatchingPoolError(self._no_pool_message(node, labels or {}))
        reasons: list[str] = []
        for pool in pools:
            got: list[tuple[CidrSet, int]] = []
            for fam in pool.spec.families:
                cset = next((c for _, c, s in pool.sets if s and c.family == fam and c.free > 0), None)
                if cset is None:
                    reasons.append(self._full_message(pool, fam))
                    break
                got.append((cset, cset.allocate_index()))
            if got and len(got) == len(pool.spec.families):
                return self._take(node, pool.spec.name, got)
            for cset, i in got:
                cset.release_index(i)
        raise CIDRExhaustedError(f"no pod CIDR for node {node}: " + "; ".join(reasons))

    def _take(self, node: str, pool: str, got: list[tuple[CidrSet, int]]) -> Allocation:
        """Record freshly allocated blocks as `node`'s holding (also in any overlapping set)."""
        held: list[_Held] = []
        blocks: list[tuple[CidrSet, int]] = []
        for cset, i in got:
            ints = cset.block_ints(i)
            held.append((cset.block_str(i), ints))
            self._owners[(id(cset), i)] = {node}
            blocks.append((cset, i))
            if len(self._sets) > 1:
                for other in self._sets.values():
                    if other is cset:
                        continue
                    for j in other.overlapping_ints(ints):  # overlapping CIDRs of invalid pools
                        other.occupy_index(j)
                        self._owners.setdefault((id(other), j), set()).add(node)
                        blocks.append((other, j))
        self._holdings[node] = tuple(held)
        self._blocks_of[node] = blocks
        return Allocation(node, pool, tuple(h[0] for h in held))

    def _full_message(self, pool: _Pool, fam: int) -> str:
        sets = [(c, s) for _, c, s in pool.sets if c.family == fam]
        mask = pool.spec.mask_for(fam)
        if not any(s for _, s in sets):
            return (
                f"pool {pool.spec.name} has no usable IPv{fam} CIDR (see its Invalid condition); "
                f"fix or append an IPv{fam} CIDR to spec.cidrs"
            )
        used = sum(c.used for c, s in sets if s)
        cap = sum(c.capacity for c, s in sets if s)
        return (
            f"pool {pool.spec.name} has no free IPv{fam} /{mask} block ({used} of {cap} used in "
            f"{', '.join(str(c.cidr) for c, s in sets if s)}); append a CIDR to its spec.cidrs or add a pool"
        )

    def _no_pool_message(self, node: str, labels: Mapping[str, str]) -> str:
        if not self._pools:
            return f"no PodCIDRPool is configured, so node {node} cannot get a pod CIDR: create one"
        desc = []
        for name in self._ranked:
            p = self._pools[name]
            sel = ",".join(f"{k}={v}" for k, v in sorted(p.spec.node_selector.items())) or "<every node>"
            desc.append(f"{name} [{sel}]" + ("" if p.valid else " (invalid)"))
        have = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"
        return (
            f"no valid PodCIDRPool matches node {node} (labels {have}); pools: {'; '.join(desc)}. "
            "Label the node to match a pool's nodeSelector, fix the invalid pool, or add a pool"
        )

    # ------------------------------------------------------------------ queries
    def allocation_of(self, node: str) -> Allocation | None:
        """What `node` holds, or None."""
        held = self._holdings.get(node)
        return None if held is None else self._allocation(node, held)

    def allocations(self) -> list[Allocation]:
        """Every holding, sorted by node name."""
        return [self._allocation(n, self._holdings[n]) for n in sorted(self._holdings)]

    def used_blocks(self) -> frozenset[str]:
        """Every node block currently marked used in any pool CIDR (reserved blocks excluded; O(blocks))."""
        out: set[str] = set()
        for cset in self._sets.values():
            for i in range(cset.total):
                if cset.is_used_index(i) and not cset.is_reserved_index(i):
                    out.add(cset.block_str(i))
        return frozenset(out)

    def orphans(self) -> list[Allocation]:
        """Holdings that lie in no configured pool (e.g. their pool was removed)."""
        return [a for a in self.allocations() if a.pool == ""]

    def _pool_name(self, held: Iterable[_Held]) -> str:
        for _, ints in held:
            name = self._pool_of_ints(ints)
            if name is not None:
                return name
        return ""

    def pool_of_cidr(self, cidr: str | Network) -> str | None:
        """Name of the pool whose CIDR contains `cidr`, or None.

        Serving CIDRs are searched first (they never overlap each other), then CIDRs that serve nothing
        new (invalid or blamed for an overlap); ties follow the selection ranking.
        """
        try:
            ints = int_cidr(parse_cidr(cidr))
        except InvalidCIDRError:
            return None
        return self._pool_of_ints(ints)

    def _pool_of_ints(self, ints: IntCIDR) -> str | None:
        version, lo, hi, _ = ints
        for want_serving in (True, False):
            for name in self._ranked:
                for _, cset, serving in self._pools[name].sets:
                    if serving == want_serving and cset.family == version and cset.covers(lo, hi):
                        return name
        return None

    def usage(self, pool_name: str) -> PoolUsage:
        """Counts for one pool (see PoolUsage); unknown pools raise KeyError."""
        pool = self._pools[pool_name]
        nodes = tuple(n for n in sorted(self._holdings) if self._pool_name(self._holdings[n]) == pool_name)
        caps, frees = [], []
        for fam in pool.spec.families:
            serving = [c for _, c, s in pool.sets if s and pool.valid and c.family == fam]
            caps.append(sum(c.capacity for c in serving))
            frees.append(sum(c.free for c in serving))
        return PoolUsage(
            pool_name,
            allocated=len(nodes),
            capacity=min(caps) if caps else 0,
            free=min(frees) if frees else 0,
            nodes=nodes,
        )
