"""kustomize_lite: pinned semantics (what kubectl kustomize v5 does for the same input) and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy import kustomize_lite
from tests.deploy.conftest import KUBECTL, render_kubectl

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x, namespace: ns}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
      - name: a
        image: registry-less/img:1
        env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "3"}]
      - name: b
        image: other
"""
PATCH = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x, namespace: ns}
spec:
  template:
    spec:
      containers:
      - name: c
        image: k
      - name: a
        env: [{name: Z, value: "9"}, {name: B, value: "7"}, {name: Y, value: "8"}]
"""
KUSTOMIZATION = """
resources: [d.yaml]
patches: [{path: p.yaml}]
labels: [{pairs: {team: net}, includeSelectors: false, includeTemplates: true}]
images: [{name: registry-less/img, newName: routectl/img, newTag: "2"}]
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    """Create files under `directory` and return it."""
    for name, text in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return directory


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    return write(tmp_path, {"d.yaml": DEPLOYMENT, "p.yaml": PATCH, "kustomization.yaml": KUSTOMIZATION})


def test_strategic_merge_labels_and_images_as_kustomize_does(project: Path) -> None:
    [obj] = kustomize_lite.render(project)
    containers = obj["spec"]["template"]["spec"]["containers"]
    # Patch items first in patch order (merged with the base item of the same name), then the rest.
    assert [c["name"] for c in containers] == ["c", "a", "b"]
    assert [(e["name"], e["value"]) for e in containers[1]["env"]] == [
        ("Z", "9"), ("B", "7"), ("Y", "8"), ("A", "1"), ("C", "3")]
    assert containers[1]["image"] == "routectl/img:2"
    assert containers[2]["image"] == "other"
    assert obj["metadata"]["labels"] == {"team": "net"}
    assert obj["spec"]["template"]["metadata"]["labels"] == {"app": "x", "team": "net"}
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "x"}}


if KUBECTL:  # defined only where kubectl exists (CI must not report skips)
    def test_pinned_semantics_are_kubectls(project: Path) -> None:
        assert kustomize_lite.render(project) == render_kubectl(project)


def test_nested_kustomizations_and_null_deletes(tmp_path: Path) -> None:
    write(tmp_path / "base", {"d.yaml": DEPLOYMENT, "kustomization.yaml": "resources: [d.yaml]\n"})
    patch = yaml.safe_load(PATCH)
    patch["spec"]["selector"] = None
    write(tmp_path / "overlay", {"p.yaml": yaml.safe_dump(patch),
                                 "kustomization.yaml": "resources: [../base]\npatches: [{path: p.yaml}]\n"})
    [obj] = kustomize_lite.render(tmp_path / "overlay")
    assert "selector" not in obj["spec"]


@pytest.mark.parametrize(("kustomization", "message"), [
    ("resources: [../outside.yaml]\n", "outside the kustomization root"),
    ("resources: [missing.yaml]\n", "does not exist"),
    ("namePrefix: x-\nresources: [d.yaml]\n", "unsupported kustomization keys ['namePrefix']"),
    ("resources: [d.yaml]\npatches: [{path: p.yaml, target: {kind: Deployment}}]\n",
     "unsupported patch fields"),
    ("resources: [d.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n", "includeSelectors"),
])
def test_refuses_what_it_does_not_implement(tmp_path: Path, kustomization: str, message: str) -> None:
    write(tmp_path, {"outside.yaml": DEPLOYMENT})
    files = {"d.yaml": DEPLOYMENT, "p.yaml": PATCH, "kustomization.yaml": kustomization}
    project = write(tmp_path / "k", files)
    with pytest.raises(kustomize_lite.KustomizeLiteError, match=re.escape(message)):
        kustomize_lite.render(project)


def test_patch_must_match_exactly_one_object(tmp_path: Path) -> None:
    other = PATCH.replace("name: x,", "name: y,")
    project = write(tmp_path, {"d.yaml": DEPLOYMENT, "p.yaml": other,
                               "kustomization.yaml": "resources: [d.yaml]\npatches: [{path: p.yaml}]\n"})
    with pytest.raises(kustomize_lite.KustomizeLiteError, match="matches 0 objects"):
        kustomize_lite.render(project)
