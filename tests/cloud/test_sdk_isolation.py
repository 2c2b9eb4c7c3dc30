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


RACE = r"""
import importlib, threading
from routectl.cloud.factory import make_driver
from routectl.cloud.sdk import COMPUTE_SERVICES, compute_service, compute_types
from routectl.controller.main import warm_cloud_sdk

compute_types()  # what the warm-up imports first is in already: its Cloud Quotas imports come at once
for service in COMPUTE_SERVICES:
    importlib.import_module(f"{compute_service(service).__name__}.transports.rest")
drv = make_driver("gce", project="p", network="n", cluster_name="c", endpoint="http://127.0.0.1:9")
barrier, errors = threading.Barrier(2), []

def run(fn):
    barrier.wait()
    try:
        fn()
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=run, args=(lambda: warm_cloud_sdk("gce"),)),
           threading.Thread(target=run, args=(lambda: drv._client("quotas"),))]
for t in threads:
    t.start()
for t in threads:
    t.join()
drv._client("quotas")  # and the module is whole afterwards
print(errors)
"""


def test_the_warm_up_and_a_first_route_sync_never_import_the_same_sdk_at_once() -> None:
    """The warm-up thread and a route sync making its first Cloud Quotas client imported the same package
    together: Python raised a deadlock error in one and left the package half imported, so every route
    sync after it failed (1 start-up in 3 at 5,000 nodes). Without the SDK import lock this fails every
    time; each run is a fresh interpreter (imports are per process)."""
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "[]", proc.stdout
