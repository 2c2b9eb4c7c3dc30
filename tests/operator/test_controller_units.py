"""Pure parts of the controller: configuration from flags/env, views, conditions and pool status."""

from __future__ import annotations

import pytest

from routectl.controller.config import ENV_VARS, Config, load_config
from routectl.controller.state import (
    NodeView,
    PoolFacts,
    condition_is_current,
    merge_warnings,
    pool_conditions,
    pool_status,
    route_state,
    stale_placeholder_changes,
    status_differs,
)


def test_flags_override_env_override_defaults() -> None:
    env = {"ROUTECTL_PROVIDER": "aws", "ROUTECTL_CLUSTER_NAME": "prod", "ROUTECTL_RESYNC_SECONDS": "60",
           "ROUTECTL_AWS_ROUTE_TABLE_IDS": "rtb-1, rtb-2", "ROUTECTL_LEADER_ELECT": "false"}
    cfg = load_config({"resync_seconds": 30.0, "cluster_name": None}, env)
    assert (cfg.provider, cfg.cluster_name, cfg.resync_seconds) == ("aws", "prod", 30.0)
    assert cfg.aws_route_table_ids == ("rtb-1", "rtb-2")
    assert cfg.leader_elect is False
    assert cfg.driver_settings()["cluster_id"] == "prod"
    assert cfg.driver_settings()["route_table_ids"] == ["rtb-1", "rtb-2"]
    assert load_config({}, {"ROUTECTL_GCE_PROJECT": "p", "ROUTECTL_PROVIDER": "gce"}).provider == "gce"


def test_provider_is_required_with_a_message_that_says_so() -> None:
    with pytest.raises(ValueError, match=r"--provider \(or ROUTECTL_PROVIDER\) is required: gce or aws"):
        load_config({}, {})
    with pytest.raises(ValueError) as info:
        load_config({}, {"ROUTECTL_GCE_PROJECT": "p"})
    assert "gce needs a project" not in str(info.value)


def test_controller_help_shows_defaults() -> None:
    from click.testing import CliRunner

    from routectl.controller.main import controller

    out = CliRunner().invoke(controller, ["--help"], terminal_width=200).output
    assert "default: 300.0" in out and "default: kube-system" in out and "default: 15.0" in out


def test_every_setting_has_an_env_var() -> None:
    from dataclasses import fields

    assert {f.name for f in fields(Config)} == set(ENV_VARS)


@pytest.mark.parametrize(("flags", "env", "needle"), [
    ({"provider": "azure"}, {}, "provider must be one of"),
    ({"provider": "gce"}, {}, "gce needs a project"),
    ({"provider": "aws", "resync_seconds": 0.0}, {}, "resync period"),
    ({"provider": "aws", "lease_duration": 5.0, "renew_deadline": 10.0}, {}, "leader election"),
    ({"provider": "aws", "health_address": "8080"}, {}, "HOST:PORT"),
    ({"provider": "aws", "event_namespace": "routectl-system"}, {}, "cluster-scoped"),
    ({}, {"ROUTECTL_PROVIDER": "aws", "ROUTECTL_CONCURRENCY": "many"}, "ROUTECTL_CONCURRENCY"),
])
def test_bad_settings_are_refused_with_a_clear_message(flags: dict, env: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        load_config(flags, env)


def test_node_view_reads_cidrs_provider_and_condition() -> None:
    body = {"metadata": {"name": "n1", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {"podCIDR": "10.0.1.0/24", "providerID": "gce://p/z/n1"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated",
                 "message": "x"}]}}
    v = NodeView.from_body(body)
    assert (v.name, v.pod_cidrs, v.provider_id) == ("n1", ("10.0.1.0/24",), "gce://p/z/n1")
    assert v.resource_version == "7"
    assert v.condition is not None and v.condition["reason"] == "NoRouteCreated"
    assert not v.deleting
    assert not condition_is_current(v.condition, route_state(True))
    assert condition_is_current({"status": "False", "reason": "RouteCreated",
                                 "message": "RouteController created a route"}, route_state(True))


def test_failed_route_state_carries_the_reason() -> None:
    s = route_state(False, "RouteLimitReached", "raise the quota")
    assert (s.ok, s.reason, s.message) == (False, "NoRouteCreated", "RouteLimitReached: raise the quota")


def test_pool_conditions_ready_invalid_exhausted_limits() -> None:
    def by_type(f: PoolFacts) -> dict[str, tuple[str, str]]:
        return {c["type"]: (c["status"], c["reason"]) for c in pool_conditions(f)}

    ok = by_type(PoolFacts("p", 1, allocated=3, capacity=256, free=253))
    assert ok["Ready"] == ("True", "Ready") and ok["Invalid"][0] == ok["Exhausted"][0] == "False"
    bad = by_type(PoolFacts("p", 1, invalid="overlaps pool q"))
    assert bad["Ready"] == ("False", "Invalid") and bad["Invalid"] == ("True", "Invalid")
    full = by_type(PoolFacts("p", 1, exhausted="no free /24"))
    assert full["Ready"] == ("False", "Exhausted") and full["Exhausted"][0] == "True"
    limit = by_type(PoolFacts("p", 1, reached="quota", nearing="quota"))
    assert limit["RouteLimitReached"][0] == limit["RouteLimitNearing"][0] == "True"
    assert limit["Ready"] == ("False", "RouteLimitReached")
    held = by_type(PoolFacts("p", 1, deleting=True, holders=("n1",)))
    assert held["Ready"] == ("False", "InUse")


def test_pool_status_keeps_transition_times_and_detects_changes() -> None:
    facts = PoolFacts("p", 2, allocated=1, capacity=4, free=3)
    first = pool_status(facts, None, "2026-01-01T00:00:00Z")
    assert first["observedGeneration"] == 2
    again = pool_status(facts, first, "2026-01-02T00:00:00Z")
    assert all(c["lastTransitionTime"] == "2026-01-01T00:00:00Z" for c in again["conditions"])
    assert not status_differs(first, again)
    facts.free, facts.exhausted = 0, "full"
    changed = pool_status(facts, first, "2026-01-03T00:00:00Z")
    assert status_differs(first, changed)
    times = {c["type"]: c["lastTransitionTime"] for c in changed["conditions"]}
    assert times["Exhausted"] == "2026-01-03T00:00:00Z" and times["Invalid"] == "2026-01-01T00:00:00Z"
    facts.deleting, facts.holders, facts.holder_cidrs = True, ("n1",), {"n1": ("10.0.0.0/24",)}
    assert pool_status(facts, changed, "t")["nodes"] == [{"name": "n1", "cidrs": ["10.0.0.0/24"]}]


def test_in_cluster_token_is_reread_after_rotation(tmp_path) -> None:
    from routectl.controller.kube import KubeClient

    token = tmp_path / "token"
    token.write_text("first\n")
    client = KubeClient("https://k8s.invalid", {"Authorization": "Bearer first"}, token_file=str(token))
    assert client._auth_header() == {"Authorization": "Bearer first"}
    token.write_text("second\n")
    assert client._auth_header() == {"Authorization": "Bearer first"}  # not re-read within a minute
    client._token_read -= 61
    assert client._auth_header() == {"Authorization": "Bearer second"}


def test_cli_refuses_bad_configuration_before_connecting() -> None:
    from click.testing import CliRunner

    from routectl.cli import main

    result = CliRunner().invoke(main, ["controller", "--provider", "gce", "--resync-seconds", "-1"],
                                env={"ROUTECTL_GCE_PROJECT": ""})
    assert result.exit_code == 2
    assert "gce needs a project" in result.output and "resync period" in result.output
    help_text = CliRunner().invoke(main, ["controller", "--help"]).output
    assert "ROUTECTL_RESYNC_SECONDS" in help_text and "--lease-duration" in help_text


def test_warnings_full_sync_replaces_partial_result_merges_per_table() -> None:
    from types import SimpleNamespace as W

    reached_a = W(kind="reached", table="a", message="a full")
    nearing_b = W(kind="nearing", table="b", message="b")
    nearing_a = W(kind="nearing", table="a", message="a 90%")
    assert merge_warnings([reached_a, nearing_b], [], full=True) == []
    assert merge_warnings([reached_a, nearing_b], [], full=False) == [reached_a, nearing_b]
    merged = merge_warnings([reached_a, nearing_b], [nearing_a], full=False)
    assert merged == [reached_a, nearing_b, nearing_a]
    reached_a2 = W(kind="reached", table="a", message="a full again")
    assert merge_warnings([reached_a, nearing_b], [reached_a2], full=False) == [nearing_b, reached_a2]


def test_stale_placeholders_follow_the_failed_deletes() -> None:
    assert stale_placeholder_changes({"10.0.1.0/24", "10.0.2.0/24"}, {"10.0.2.0/24", "10.0.3.0/24"}) == (
        {"10.0.1.0/24"}, {"10.0.3.0/24"})
    assert stale_placeholder_changes(set(), set()) == (set(), set())
