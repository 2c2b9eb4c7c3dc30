"""The block set of one CIDR cut into node blocks: a bitmap with round-robin allocation.

Modelled on kube-controller-manager's ``cidrset`` (``cidr_set.go``):

* one bit per block (a ``bytearray``; bit ``i`` is bit ``i % 8`` of byte ``i // 8``), so the state is
  at most 1 bit per block plus a constant;
* ``allocate`` searches from ``next_candidate`` (the block after the last one handed out) and wraps
  around, so a block that was just released is not handed out again at once (k8s #127792);
* ``occupy`` and ``release`` are idempotent and checked: the block must lie inside the CIDR and be
  exactly one node block (prefix length == node mask);
* at most 2**16 blocks per CIDR (``constants.MAX_BLOCKS_BITS``), as kube-controller-manager does for
  IPv6; a larger request is refused with a message that says which mask or CIDR size would work.

Ranges can be *reserved* (e.g. the service CIDR inside a pool CIDR): every block overlapping them is
marked used for good; reserved blocks count neither as capacity nor as used.

Counters: ``total`` (all blocks), ``reserved``, ``capacity = total - reserved``, ``used`` (blocks
held, reserved excluded) and ``free = capacity - used``.

Pure: no I/O. Works for IPv4 and IPv6.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable

from routectl.constants import MAX_BLOCKS_BITS
from routectl.ipam.errors import CIDRExhaustedError, InvalidCIDRError
from routectl.ipam.netutil import IntCIDR, Network, fast_parse, format_cidr, int_cidr, parse_cidr

# A byte that still has at least one clear bit (searched at C speed by `re`).
_NOT_FULL = re.compile(rb"[^\xff]")


def _lowest_zero(byte: int) -> int:
    """Index (0..7) of the lowest clear bit of a byte that is not 0xFF."""
    inv = ~byte & 0xFF
    return (inv & -inv).bit_length() - 1


def _constructor_fields(net: Network) -> dict[str, object]:
    return dict(vars(net))


def _make_block_factory(netcls: type[Network], mask: int) -> Callable[[int], Network]:
    """A function int -> netcls((int, mask)) for addresses the caller knows are aligned blocks.

    The hot path of `allocate`: ipaddress's constructor re-splits, re-validates and re-checks host bits
    (about 3x the cost of the rest of an allocation). This sets exactly the fields that constructor
    sets, and is used only when a self-check at first use shows the objects are identical (same fields,
    equal, same hash and str); otherwise, and for /31, /32, /127, /128 (whose constructor also sets
    `hosts`), the constructor itself is used. Pure.
    """
    maxlen = 32 if netcls is ipaddress.IPv4Network else 128
    if mask >= maxlen - 1:
        return lambda addr: netcls((addr, mask))
    addrcls = ipaddress.IPv4Address if maxlen == 32 else ipaddress.IPv6Address
    netmask_and_len = netcls._make_netmask(mask)  # type: ignore[union-attr]
    new = object.__new__

    def fast(addr: int) -> Network:
        net = new(netcls)
        net.network_address = addrcls(addr)  # type: ignore[misc]
        net.netmask, net._prefixlen = netmask_and_len  # type: ignore[misc]
        return net

    probe = 1 << (maxlen - mask)
    real, quick = netcls((probe, mask)), fast(probe)
    if (_constructor_fields(real) != _constructor_fields(quick) or real != quick
            or hash(real) != hash(quick) or str(real) != str(quick)):
        return lambda addr: netcls((addr, mask))
    return fast


def check_block_count(net: Network, mask: int, what: str = "CIDR") -> None:
    """Raise InvalidCIDRError unless `net` cut into /`mask` blocks gives 1..2**16 blocks."""
    maxlen = net.max_prefixlen
    fam = "IPv4" if net.version == 4 else "IPv6"
    if not 0 < mask <= maxlen:
        raise InvalidCIDRError(f"{fam} node mask /{mask} is out of range: use /1 to /{maxlen}")
    if mask < net.prefixlen:
        raise InvalidCIDRError(
            f"{what} {net}: the {fam} node mask /{mask} is shorter than the CIDR's /{net.prefixlen} prefix; "
            f"use a node mask of at least /{net.prefixlen} (a node block cannot be larger than its CIDR)"
        )
    bits = mask - net.prefixlen
    if bits > MAX_BLOCKS_BITS:
        raise InvalidCIDRError(
            f"{what} {net} with a /{mask} node mask would hold 2^{bits} blocks; at most 2^{MAX_BLOCKS_BITS} "
            f"({1 << MAX_BLOCKS_BITS}) blocks per CIDR are supported: use a node mask of at most "
            f"/{net.prefixlen + MAX_BLOCKS_BITS}, or list smaller CIDRs (/{mask - MAX_BLOCKS_BITS} or longer)"
        )


class CidrSet:
    """Allocation bitmap of one CIDR cut into blocks of prefix length `mask` (≤ 2**16 blocks)."""

    __slots__ = (
        "_af",
        "_base",
        "_bits",
        "_block_mask",
        "_make_block",
        "_mask_text",
        "_netcls",
        "_next",
        "_reserved",
        "_reserved_ranges",
        "_shift",
        "_total",
        "_used",
        "cidr",
        "mask",
    )

    def __init__(self, cidr: str | Network, mask: int) -> None:
        net = parse_cidr(cidr)
        check_block_count(net, mask)
        self.cidr: Network = net
        self.mask: int = mask
        self._netcls = ipaddress.IPv4Network if net.version == 4 else ipaddress.IPv6Network
        self._shift = net.max_prefixlen - mask
        self._base = int(net.network_address)
        self._total = 1 << (mask - net.prefixlen)
        self._bits = bytearray((self._total + 7) // 8)
        pad = len(self._bits) * 8 - self._total
        if pad:  # padding bits past the last block are permanently "used"
            self._bits[-1] = (0xFF << (8 - pad)) & 0xFF
        self._used = 0
        self._reserved = 0
        self._reserved_ranges: list[range] = []
        self._next = 0
        self._make_block = _make_block_factory(self._netcls, mask)
        self._af = socket.AF_INET if net.version == 4 else socket.AF_INET6
        self._mask_text = str(mask)
        self._block_mask = (1 << self._shift) - 1

    def __repr__(self) -> str:
        return f"CidrSet({str(self.cidr)!r}, {self.mask}, used={self._used}, free={self.free})"

    # ----------------------------------------------------------------- counters
    @property
    def family(self) -> int:
        """4 or 6."""
        return self.cidr.version

    @property
    def total(self) -> int:
        """Number of blocks in the CIDR, reserved ones included."""
        return self._total

    @property
    def reserved(self) -> int:
        """Number of blocks overlapping a reserved range (never handed out)."""
        return self._reserved

    @property
    def capacity(self) -> int:
        """Blocks that can be handed to nodes: total minus reserved."""
        return self._total - self._reserved

    @property
    def used(self) -> int:
        """Blocks held (allocated or occupied), reserved blocks excluded."""
        return self._used

    @property
    def free(self) -> int:
        """Blocks still available: capacity minus used."""
        return self._total - self._reserved - self._used

    @property
    def next_candidate(self) -> int:
        """Index where the next allocation search starts (round-robin cursor)."""
        return self._next

    @next_candidate.setter
    def next_candidate(self, value: int) -> None:
        self._next = value % self._total

    @property
    def state_bytes(self) -> int:
        """Bytes of bitmap state (ceil(total / 8))."""
        return len(self._bits)

    # ----------------------------------------------------------------- index helpers
    def block(self, index: int) -> Network:
        """The network of block number `index`."""
        if not 0 <= index < self._total:
            raise InvalidCIDRError(f"block index {index} is outside 0..{self._total - 1} of {self.cidr}")
        return self._make_block(self._base + (index << self._shift))

    def index_of(self, net: str | Network) -> int:
        """Block number of `net`; raise InvalidCIDRError unless it is exactly one block of this set."""
        if isinstance(net, str):  # fast path for the common case: an aligned block of this set, as text
            addr, _, plen = net.partition("/")
            if plen == self._mask_text:
                try:
                    offset = int.from_bytes(socket.inet_pton(self._af, addr), "big") - self._base
                except OSError:  # other family, malformed, ...: the general path says what is wrong
                    offset = -1
                if offset >= 0 and not offset & self._block_mask and offset >> self._shift < self._total:
                    return offset >> self._shift
        parsed = fast_parse(net, canonical=False) if isinstance(net, str) else None
        version, lo, _, plen = parsed or int_cidr(parse_cidr(net))
        if version != self.cidr.version:
            raise InvalidCIDRError(f"{net} is IPv{version} but {self.cidr} is IPv{self.cidr.version}")
        offset = lo - self._base
        if offset < 0 or offset >> self._shift >= self._total or plen < self.cidr.prefixlen:
            raise InvalidCIDRError(f"{net} is outside {self.cidr}")
        if plen != self.mask:
            raise InvalidCIDRError(
                f"{net} is misaligned: blocks of {self.cidr} are /{self.mask}, not /{plen}"
            )
        return offset >> self._shift

    def contains(self, net: str | Network) -> bool:
        """True when `net` (any prefix length, same family) lies entirely inside this set's CIDR."""
        net = parse_cidr(net)
        return net.version == self.cidr.version and net.subnet_of(self.cidr)  # type: ignore[arg-type]

    def block_str(self, index: int) -> str:
        """Canonical text of block number `index` (cheaper than str(block(index)))."""
        return format_cidr(self.cidr.version, self._base + (index << self._shift), self.mask)

    def block_ints(self, index: int) -> IntCIDR:
        """Block number `index` as (version, first, last, prefix length)."""
        lo = self._base + (index << self._shift)
        return (self.cidr.version, lo, lo + (1 << self._shift) - 1, self.mask)

    def covers(self, lo: int, hi: int) -> bool:
        """True when the address range lo..hi (ints, same family) lies inside this set's CIDR."""
        return self._base <= lo and hi < self._base + (self._total << self._shift)

    def overlapping(self, net: str | Network) -> range:
        """Indexes of the blocks that share at least one address with `net` (empty if none)."""
        return self.overlapping_ints(int_cidr(parse_cidr(net)))

    def overlapping_ints(self, net: IntCIDR) -> range:
        """Like `overlapping`, for an IntCIDR."""
        version, lo, hi, _ = net
        if version != self.cidr.version:
            return range(0)
        lo -= self._base
        hi -= self._base
        last = (self._total << self._shift) - 1
        if hi < 0 or lo > last:
            return range(0)
        lo = max(lo, 0)
        hi = min(hi, last)
        return range(lo >> self._shift, (hi >> self._shift) + 1)

    def is_used_index(self, index: int) -> bool:
        """True when block `index` is used or reserved."""
        return bool(self._bits[index >> 3] >> (index & 7) & 1)

    def is_reserved_index(self, index: int) -> bool:
        """True when block `index` overlaps a reserved range."""
        return any(index in r for r in self._reserved_ranges)

    def occupy_index(self, index: int) -> bool:
        """Mark block `index` used; return False if it already was (idempotent)."""
        byte, bit = index >> 3, 1 << (index & 7)
        if self._bits[byte] & bit:
            return False
        self._bits[byte] |= bit
        self._used += 1
        return True

    def release_index(self, index: int) -> bool:
        """Mark block `index` free; return False if it was free or is reserved (those stay used)."""
        byte, bit = index >> 3, 1 << (index & 7)
        if not self._bits[byte] & bit or self.is_reserved_index(index):
            return False
        self._bits[byte] &= ~bit & 0xFF
        self._used -= 1
        return True

    # ----------------------------------------------------------------- public block API
    def reserve(self, net: str | Network) -> int:
        """Keep every block overlapping `net` out of allocation for good; return how many blocks it covers.

        Call before occupying node blocks: a block already held when it gets reserved stays counted
        as reserved (the holder keeps it; release leaves it used).
        """
        idx = self.overlapping(net)
        if not idx:
            return 0
        for i in idx:
            if self.is_reserved_index(i):
                continue
            byte, bit = i >> 3, 1 << (i & 7)
            if self._bits[byte] & bit:
                self._used -= 1
            self._bits[byte] |= bit
            self._reserved += 1
        self._reserved_ranges.append(idx)
        return len(idx)

    def _first_clear(self, start: int) -> int:
        """Lowest clear bit at or after `start`, or -1."""
        bits = self._bits
        j = start >> 3
        b = bits[j] | ((1 << (start & 7)) - 1)
        if b != 0xFF:
            return (j << 3) + _lowest_zero(b)
        m = _NOT_FULL.search(bits, j + 1)
        if m is None:
            return -1
        j = m.start()
        return (j << 3) + _lowest_zero(bits[j])

    def allocate(self) -> Network:
        """Hand out the next free block at or after the round-robin cursor (wrapping around)."""
        i = self.allocate_index()
        return self._make_block(self._base + (i << self._shift))

    def allocate_index(self) -> int:
        """Like `allocate`, returning the block number (no network object is built)."""
        if self._used + self._reserved >= self._total:
            raise CIDRExhaustedError(
                f"{self.cidr} has no free /{self.mask} block left ({self._used} used, {self._reserved} "
                "reserved): add a CIDR to the pool"
            )
        i = self._first_clear(self._next)
        if i < 0:
            i = self._first_clear(0)
        self._bits[i >> 3] |= 1 << (i & 7)
        self._used += 1
        self._next = (i + 1) % self._total
        return i

    def occupy(self, net: str | Network) -> bool:
        """Mark block `net` used (it must be one aligned block inside the CIDR); False if already used."""
        index = self.index_of(net)
        byte, bit = index >> 3, 1 << (index & 7)  # occupy_index inlined: the rebuild hot path
        if self._bits[byte] & bit:
            return False
        self._bits[byte] |= bit
        self._used += 1
        return True

    def release(self, net: str | Network) -> bool:
        """Mark block `net` free (checked like occupy); False if it was free or is reserved."""
        return self.release_index(self.index_of(net))

    def is_used(self, net: str | Network) -> bool:
        """True when block `net` (checked like occupy) is used or reserved."""
        return self.is_used_index(self.index_of(net))
