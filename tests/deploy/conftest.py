"""Fixtures for the deploy/ tests: rendered overlays (pure-Python renderer, plus kubectl when installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize_lite

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("gce", "aws")
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
