"""Load the PodCIDRPool CRD manifest (crds/podcidrpool.yaml) so the controller and simulator can install it.

In a source checkout the repository's ``crds/podcidrpool.yaml`` is read; an installed package reads its
copy ``routectl/data/podcidrpool.yaml`` (a unit test fails if the two differ). It lives outside
routectl.ipam because it reads files, and the IPAM core stays free of I/O.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from routectl.constants import VERSION

CRD_FILENAME = "podcidrpool.yaml"
SOURCE_PATH = Path(__file__).resolve().parents[1] / "crds" / CRD_FILENAME


def crd_text() -> str:
    """The CRD manifest as YAML text (source checkout first, packaged copy otherwise)."""
    if SOURCE_PATH.is_file():
        return SOURCE_PATH.read_text(encoding="utf-8")
    return resources.files("routectl").joinpath("data", CRD_FILENAME).read_text(encoding="utf-8")


@functools.cache
def _load() -> dict[str, Any]:
    return yaml.safe_load(crd_text())


def load_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object as a dict (a fresh copy each call: safe to mutate)."""
    return copy.deepcopy(_load())


def openapi_schema(version: str = VERSION) -> dict[str, Any]:
    """The openAPIV3Schema of `version` (default: the served version in routectl.constants)."""
    for v in load_crd()["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"the PodCIDRPool CRD has no version {version!r}")
