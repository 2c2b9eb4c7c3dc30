"""Fixtures for the cloud suite: `cloud` is parametrised over the GCE and AWS harnesses; `gce` and `aws`
give one of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cloud.harness import AWSHarness, GCEHarness


def _harness(cloud: str) -> Iterator[Any]:
    h = GCEHarness() if cloud == "gce" else AWSHarness()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(params=["gce", "aws"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh fake cloud with its real driver."""
    yield from _harness(request.param)


@pytest.fixture
def gce() -> Iterator[GCEHarness]:
    """A fresh fake GCE with the real google-cloud-compute driver."""
    yield from _harness("gce")


@pytest.fixture
def aws() -> Iterator[AWSHarness]:
    """A fresh moto EC2 with the real boto3 driver."""
    yield from _harness("aws")
