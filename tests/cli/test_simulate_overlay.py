"""`routectl simulate --overflow overlay`: 60 AWS nodes on a 50-route table all work: 48 routed, 12 on
the overlay, in the JSON and in the table."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from routectl.ops.render import render_simulate
from routectl.ops.schema import SIMULATE_SCHEMA
from tests.cli.test_simulate import simulate_cmd

pytestmark = pytest.mark.slow


def test_aws_60_nodes_with_overlay_fallback_all_work() -> None:
    cmd = simulate_cmd("--cloud", "aws", "--nodes", "60", "--overflow", "overlay", "-o", "json")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    jsonschema.validate(report, SIMULATE_SCHEMA)
    assert report["settings"]["overflow"] == "overlay"
    assert report["summary"] == {"nodes": 60, "withPodCIDR": 60, "routed": 48, "withoutRoute": 0,
                                 "warnings": 1, "working": 60, "overlay": 12}
    overlay = [n for n in report["nodes"] if n.get("transport") == "overlay"]
    assert len(overlay) == 12
    for n in report["nodes"]:
        cond = n["networkUnavailable"]
        assert cond["status"] == "False"
        if n in overlay:
            assert cond["reason"] == "RouteOverlay" and n["routes"] == []
            assert "at its limit of 50 routes" in cond["message"] and "UDP 8472" in cond["message"]
        else:
            assert cond["reason"] == "RouteCreated" and n["routes"]
    (pool,) = report["pools"]
    assert (pool["routeLimitFallback"], pool["routedNodes"], pool["overlayNodes"]) == ("Overlay", 48, 12)
    text = render_simulate(report)
    rows = [line.split() for line in text.splitlines() if line.startswith("node-")]
    assert sum(1 for r in rows if r[-1] == "RouteOverlay" and r[-2] == "False" and r[2] == "-") == 12
    assert "48 (+12 overlay)" in text
    assert text.splitlines()[-1].startswith("Converged in ")
    assert "60 nodes (60 working), 48 routed, 12 on the overlay, 0 without route" in text
