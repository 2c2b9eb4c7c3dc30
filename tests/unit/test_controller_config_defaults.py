"""Controller defaults that depend on where it runs: per-provider cloud rates, the in-pod Lease namespace,
and /metrics answering loopback clients only (the controller runs with hostNetwork)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import make_mocked_request

from routectl.cloud.factory import make_driver
from routectl.controller.config import load_config
from routectl.controller.main import HealthServer
from routectl.controller.metrics import Metrics

ENV = {"ROUTECTL_PROVIDER": "aws"}


def test_rates_default_per_provider_and_flags_still_win() -> None:
    cfg = load_config({"aws_endpoint": "http://127.0.0.1:1"}, ENV, namespace_file="/nonexistent")
    assert "rate" not in cfg.driver_settings() and "burst" not in cfg.driver_settings()
    drv = make_driver("aws", cluster_cidrs=["10.244.0.0/16"], **cfg.driver_settings())
    assert (drv.bucket.rate, drv.bucket.burst) == (4.0, 40)  # below EC2's 5/s, bucket 50
    gce = make_driver("gce", project="p", network="n", cluster_name="c")
    assert (gce.bucket.rate, gce.bucket.burst) == (20.0, 50)  # 1,200/min, below 1,500/min
    flagged = load_config({"cloud_rate": 2.5, "cloud_burst": 7}, ENV, namespace_file="/nonexistent")
    assert (flagged.driver_settings()["rate"], flagged.driver_settings()["burst"]) == (2.5, 7)
    env = load_config({}, dict(ENV, ROUTECTL_CLOUD_RATE="1.5"), namespace_file="/nonexistent")
    assert env.cloud_rate == 1.5


def test_lease_namespace_is_the_pods_own_in_a_cluster(tmp_path: Path) -> None:
    ns = tmp_path / "namespace"
    ns.write_text("routectl-system\n")
    assert load_config({}, ENV, namespace_file=str(ns)).lease_namespace == "routectl-system"
    # an explicit setting wins; outside a pod the old default stays
    assert load_config({"lease_namespace": "x"}, ENV, namespace_file=str(ns)).lease_namespace == "x"
    assert load_config({}, ENV, namespace_file=str(tmp_path / "missing")).lease_namespace == "kube-system"


def test_metrics_answer_loopback_only_unless_public() -> None:
    metrics = Metrics(lambda: None)

    async def status(public: bool, peer: str) -> int:
        server = HealthServer(metrics, lambda: True, "127.0.0.1", 0, metrics_public=public)

        class Transport:
            def get_extra_info(self, name: str, default: object = None) -> object:
                return (peer, 40000) if name == "peername" else default

        req = make_mocked_request("GET", "/metrics", transport=Transport())
        return (await server._metrics(req)).status

    assert asyncio.run(status(False, "127.0.0.1")) == 200
    assert asyncio.run(status(False, "10.1.2.3")) == 403
    assert asyncio.run(status(True, "10.1.2.3")) == 200
