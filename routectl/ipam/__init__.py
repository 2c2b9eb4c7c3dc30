"""routectl.ipam: pure node-CIDR IPAM (no I/O except `crd.load_crd`, which reads packaged YAML).

Public API (stable; other parts import these names):

* errors:    IPAMError(ValueError), InvalidCIDRError, CIDRExhaustedError, NoMatchingPoolError, PoolSpecError
* cidrset:   CidrSet(cidr, mask): allocate(), occupy(net), release(net), is_used(net), contains(net),
             reserve(net); used / free / capacity / total / reserved
* model:     PoolSpec (PoolSpec.from_resource(obj)), MasqueradeSpec
* validate:  validate_pool(spec) -> list[str]; validate_pools(specs, order=None) -> dict[str, list[str]]
* allocator: Allocator (set_pools, rebuild, select_pool, allocate, occupy, release, allocation_of,
             allocations, orphans, usage, pool_of_cidr), NodeCIDRs, Finding, Allocation, PoolUsage
* crd:       load_crd() -> dict, openapi_schema() -> dict
* cli:       the offline planner `routectl ipam`
"""

from routectl.ipam.allocator import Allocation, Allocator, Finding, NodeCIDRs, PoolUsage
from routectl.ipam.cidrset import CidrSet
from routectl.ipam.errors import (
    CIDRExhaustedError,
    InvalidCIDRError,
    IPAMError,
    NoMatchingPoolError,
    PoolSpecError,
)
from routectl.ipam.model import MasqueradeSpec, PoolSpec
from routectl.ipam.validate import validate_pool, validate_pools

__all__ = [
    "Allocation",
    "Allocator",
    "CIDRExhaustedError",
    "CidrSet",
    "Finding",
    "IPAMError",
    "InvalidCIDRError",
    "MasqueradeSpec",
    "NoMatchingPoolError",
    "NodeCIDRs",
    "PoolSpec",
    "PoolSpecError",
    "PoolUsage",
    "validate_pool",
    "validate_pools",
]
