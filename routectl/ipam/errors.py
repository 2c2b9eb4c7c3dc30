"""IPAM error types: every refusal is a ValueError subclass whose message says what to change."""

from __future__ import annotations


class IPAMError(ValueError):
    """Base class of every error raised by routectl.ipam (catch this one in adapters)."""


class InvalidCIDRError(IPAMError):
    """A CIDR is malformed, has host bits set, is misaligned, outside its set, or too large to track."""


class CIDRExhaustedError(IPAMError):
    """No free block is left in any CIDR that could serve the request."""


class NoMatchingPoolError(IPAMError):
    """No valid PodCIDRPool's nodeSelector matches the node's labels."""


class PoolSpecError(IPAMError):
    """A PodCIDRPool object cannot be parsed into a PoolSpec (wrong type or shape of a field)."""
