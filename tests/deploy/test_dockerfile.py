"""The Dockerfile (no Docker daemon here): stages, users, packages and what goes into the image.

It parses the Dockerfile for the properties the manifests rely on, and builds the same wheel
`pip install .` builds in the image to prove that install carries what the image needs.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import kustomize_lite
from tests.deploy.conftest import DEPLOY, REPO

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    """One build stage: its base, its name and its instructions in order."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        """Arguments of every instruction `op` (upper case) in this stage."""
        return [args for o, args in self.instructions if o == op]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages of a Dockerfile (comments dropped, continuations joined)."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert m, f"cannot parse FROM {rest}"
            stages.append(Stage(base=m.group(1), name=(m.group(2) or str(len(stages))).lower()))
        elif not stages:
            assert op == "ARG", f"{op} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[Stage]]:
    args, stages = parse(DOCKERFILE.read_text(encoding="utf-8"))
    return args, {s.name: s for s in stages}, stages


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    out = [stages[name]]
    while out[-1].base in stages:
        out.append(stages[out[-1].base])
    return out


def effective_user(stages: dict[str, Stage], name: str) -> str:
    """The USER a target runs as (root when no stage in its chain sets one)."""
    for stage in chain(stages, name):
        users = stage.all("USER")
        if users:
            return users[-1]
    return "0"


def test_base_is_python_311_slim(dockerfile) -> None:
    args, stages, ordered = dockerfile
    for stage in ordered:
        base = stage.base
        if base in stages:
            continue
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", resolved), f"stage {stage.name} is FROM {resolved}"


def test_controller_is_the_default_target_and_runs_non_root(dockerfile) -> None:
    _, stages, ordered = dockerfile
    assert ordered[-1].name == "controller", "a plain `docker build .` should give the controller"
    user = effective_user(stages, "controller")
    uid = int(user.split(":")[0])  # numeric, so Kubernetes' runAsNonRoot can verify it
    assert uid != 0
    deployment = next(o for o in kustomize_lite.render(DEPLOY / "base") if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    assert not any("apt-get" in r for s in chain(stages, "controller") for r in s.all("RUN")), \
        "the controller image needs no Debian packages"


def test_agent_installs_iptables_and_runs_as_root(dockerfile) -> None:
    _, stages, _ = dockerfile
    runs = " ".join(stages["agent"].all("RUN"))
    assert re.search(r"apt-get install\b.*--no-install-recommends.*\biptables\b", runs)
    assert "rm -rf /var/lib/apt/lists" in runs, "keep the apt lists out of the image"
    assert effective_user(stages, "agent").split(":")[0] == "0", "iptables needs uid 0 (caps come from k8s)"


def test_entrypoints_match_the_manifests(dockerfile) -> None:
    _, stages, _ = dockerfile
    for target, sub in (("controller", "controller"), ("agent", "agent")):
        entry = next(e for s in chain(stages, target) for e in s.all("ENTRYPOINT"))
        cmd = next(c for s in chain(stages, target) for c in s.all("CMD"))
        assert entry == '["routectl"]' and cmd == f'["{sub}"]'


def test_installs_the_package_without_extras(dockerfile) -> None:
    _, stages, _ = dockerfile
    installs = [r for s in stages.values() for r in s.all("RUN") if "pip install" in r]
    assert installs, "no pip install"
    for run in installs:
        assert re.search(r"pip install \.(\s|$)", run), f"install the package itself: {run}"
        assert "[" not in run and "-e " not in run, f"no extras / editable installs in images: {run}"
    copies = [c for s in stages.values() for c in s.all("COPY") if "--from" not in c]
    sources = {part for c in copies for part in c.split()[:-1]}
    assert sources == {"pyproject.toml", "README.md", "routectl"}, sources
    for src in sources:
        assert (REPO / src).exists()


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)

    for path in (".venv", ".git", "tests", "benchmarks"):
        assert ignored(path), f"{path} should not be sent to the build"
    for path in ("pyproject.toml", "README.md", "routectl/cli.py", "routectl/data/podcidrpool.yaml"):
        assert not ignored(path), f"{path} is needed by the build"


@pytest.mark.slow
def test_pip_install_dot_builds_a_wheel_with_the_cli_and_the_crd(tmp_path: Path) -> None:
    """What `pip install .` in the build stage produces: the package, its data, the entry point.

    Built from a copy of exactly what the Dockerfile COPYs, with pip's build isolation as in the image
    (the build backend comes from the package index, as it does in `docker build`).
    """
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(REPO / "pyproject.toml", context)
    shutil.copy(REPO / "README.md", context)
    shutil.copytree(REPO / "routectl", context / "routectl", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(context)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    [wheel] = list(out.glob("routectl-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "routectl/cli.py" in names and "routectl/data/podcidrpool.yaml" in names
    assert not any(n.startswith("tests/") for n in names), "tests must not ship in the image"
    assert "routectl = routectl.cli:main" in entry_points
    # Test/sim tools are extras only, so the image's plain install does not pull them in.
    required = [line for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    for tool in ("pytest", "moto", "kmock", "hypothesis"):
        assert not any(tool in line for line in required), f"{tool} is a runtime dependency"
