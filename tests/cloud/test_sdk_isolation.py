"""A controller imports its own cloud's SDK only, and of google-cloud-compute only what the driver uses.

Each check runs a fresh interpreter (imports are per process) that does what a controller does with the
cloud: warm the SDK, sync routes against the fake cloud of this process, classify an error. The other
provider's SDK costs tens of MB of resident memory, all of google-cloud-compute about 40 MB more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from routectl.sim.aws import CREDENTIALS
from tests.cloud.harness import CLUSTER, CLUSTER_CIDRS, AWSHarness, GCEHarness

CHILD = r"""
import json, sys
from routectl.cloud.factory import make_driver
from routectl.cloud.reconcile import RouteReconciler
from routectl.cloud.retry import classify
from routectl.controller.main import warm_cloud_sdk

provider, settings, cidrs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
warm_cloud_sdk(provider)
res = RouteReconciler(make_driver(provider, **settings), cidrs).sync([])
classify(RuntimeError("any error a call may raise"))
out = {"tables": [t.table for t in res.tables], "modules": sorted(sys.modules)}
if provider == "gce":  # the package is still whole for whoever uses it the usual way
    from google.cloud import compute_v1
    out["full_package"] = [compute_v1.AddressesClient.__name__, compute_v1.RoutesClient.__name__,
                           compute_v1.__version__ != ""]
print(json.dumps(out))
"""


def _run(provider: str, settings: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    argv = [sys.executable, "-c", CHILD, provider, json.dumps(settings), json.dumps(CLUSTER_CIDRS)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.splitlines()[-1]))


def _under(modules: list[str], *packages: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_a_gce_controller_imports_neither_boto3_nor_all_of_google_cloud_compute(gce: GCEHarness) -> None:
    out = _run("gce", {"project": "sim-project", "network": "default", "cluster_name": CLUSTER,
                       "endpoint": gce.fake.endpoint})
    assert out["tables"] == ["default"]  # it did talk to the fake through the real client
    modules = out["modules"]
    assert "google.cloud.compute_v1.services.routes.transports.rest" in modules
    assert _under(modules, "boto3", "botocore", "moto", "kubernetes") == []
    services = {m.split(".")[4] for m in _under(modules, "google.cloud.compute_v1.services")
                if m.count(".") > 3}
    # the driver's five (zone operations come with the instances client), not the 130-odd of __init__
    assert services == {"routes", "global_operations", "instances", "projects", "networks", "zone_operations"}
    assert out["full_package"] == ["AddressesClient", "RoutesClient", True]


def test_an_aws_controller_imports_no_google_library(aws: AWSHarness) -> None:
    out = _run("aws", {"cluster_id": CLUSTER, "region": "us-east-1", "cluster_cidrs": CLUSTER_CIDRS,
                       "endpoint_url": aws.sim.endpoint},
               env={"AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
                    "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"]})
    assert set(out["tables"]) == set(aws.sim.route_table_ids)  # (one capacity per table and family)
    modules = out["modules"]
    assert "boto3" in modules
    assert _under(modules, "google", "grpc", "kubernetes") == []
