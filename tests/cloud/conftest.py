"""Fixtures for the cloud suite: `cloud` is parametrised over the GCE and AWS harnesses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cloud.harness import AWSHarness, GCEHarness


@pytest.fixture(params=["gce", "aws"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh fake cloud with its real driver."""
    h = GCEHarness() if request.param == "gce" else AWSHarness()
    try:
        yield h
    finally:
        h.close()
