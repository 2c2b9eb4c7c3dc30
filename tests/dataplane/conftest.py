"""Fixtures for the dataplane tests: prerequisites (fail in CI, skip locally) and self-cleaning namespaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dataplane.netns import NetnsFactory, missing_prerequisite, root_namespace_snapshot
from tests.dataplane.scenario import Lab

HOST_CNI_STATE = Path("/var/lib/cni")  # host-local's default dataDir: the tests keep theirs in tmp_path

_REASON: list[str | None] = []


def _prerequisite_reason() -> str | None:
    if not _REASON:
        _REASON.append(missing_prerequisite())
    return _REASON[0]


@pytest.fixture(autouse=True)
def _dataplane_prerequisites() -> None:
    """Root, iproute2, iptables, the CNI plugins and working namespaces; in CI (CI=true) a missing one is
    a failure."""
    reason = _prerequisite_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"dataplane prerequisite missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def netns(_dataplane_prerequisites: None) -> Iterator[NetnsFactory]:
    """Namespace factory; every namespace and process it made is removed afterwards, also on failure,
    and the root namespace must look exactly as before."""
    before = root_namespace_snapshot()
    factory = NetnsFactory()
    try:
        yield factory
    finally:
        errors = factory.cleanup()
        leftovers = factory.leftovers()
    assert not errors, errors
    assert not leftovers, f"namespaces left behind: {leftovers}"
    after = root_namespace_snapshot()
    assert after == before, "the test changed the root network namespace"


@pytest.fixture
def lab(netns: NetnsFactory, tmp_path: Path) -> Iterator[Lab]:
    """Namespaces plus a temp dir for the nodes' CNI files and host-local leases; at the end every pod
    still attached is DELeted through the plugins (also on failure), leaving no lease behind."""
    host_cni = sorted(map(str, HOST_CNI_STATE.rglob("*"))) if HOST_CNI_STATE.exists() else None
    lab = Lab(netns, tmp_path)
    try:
        yield lab
    finally:
        errors = lab.teardown()
    assert not errors, errors
    assert not lab.leases(), f"host-local leases left after DEL: {lab.leases()}"
    after = sorted(map(str, HOST_CNI_STATE.rglob("*"))) if HOST_CNI_STATE.exists() else None
    assert after == host_cni, f"the test touched the host's {HOST_CNI_STATE}"
