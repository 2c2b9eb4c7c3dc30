"""Fixtures for the deploy/ tests: rendered overlays (pure-Python renderer, plus kubectl when installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize_lite, workload

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("gce", "aws")
CLOUDS = ("aws", "gce")
KUBECTL = shutil.which("kubectl")


def render_kubectl(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` parsed into objects (default load restrictor, as users run it)."""
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed: {proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    """Name of one overlay under deploy/overlays."""
    return request.param


@pytest.fixture(scope="session")
def rendered_all() -> dict[str, list[dict[str, Any]]]:
    """Every overlay rendered: with kubectl when installed (what users run), else with kustomize_lite."""
    out = {}
    for name in OVERLAYS:
        path = DEPLOY / "overlays" / name
        out[name] = render_kubectl(path) if KUBECTL else kustomize_lite.render(path)
    return out


@pytest.fixture(scope="session")
def rendered(rendered_all: dict[str, list[dict[str, Any]]], overlay: str) -> list[dict[str, Any]]:
    """The objects of one overlay."""
    return rendered_all[overlay]


@pytest.fixture(scope="session")
def cluster_traces() -> dict[str, workload.Trace]:
    """The real controller and agent on a simulated cluster, per cloud (see workload.py)."""
    return {cloud: workload.cluster_workload(cloud) for cloud in CLOUDS}


@pytest.fixture(scope="session")
def driver_calls() -> dict[str, list[str]]:
    """The fake cloud's call log for the drivers' less common paths, per cloud."""
    return {cloud: workload.driver_workload(cloud) for cloud in CLOUDS}
