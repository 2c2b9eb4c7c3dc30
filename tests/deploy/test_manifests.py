"""deploy/: every overlay renders, every object is well formed, RBAC is exactly what the code needs,
the workloads carry the security and scheduling properties the controller and agent depend on, and
the controller's env matches what routectl/controller/config.py reads."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from routectl import constants
from routectl.controller import config as controller_config
from tests.deploy import k8s_validate, kustomize_lite
from tests.deploy.conftest import DEPLOY, KUBECTL, OVERLAYS, REPO, render_kubectl

Obj = dict[str, Any]
NAMESPACE = "routectl-system"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
WORKLOADS = {"Deployment", "DaemonSet"}

# (apiGroup, resource, verb, resourceName or "") granted to each role, and why. This is the allowed
# list: a rule the manifests add without adding it here fails, and so does one listed here but missing.
CONTROLLER_CLUSTER_RULES = {
    # kopf indexes Nodes (list+watch); reconcile.py re-reads one (get); kube.py set_node_pod_cidrs
    # writes spec.podCIDR(s) with a JSON patch.
    *(("", "nodes", v, "") for v in ("get", "list", "watch", "patch")),
    # NetworkUnavailable condition: strategic-merge PATCH /api/v1/nodes/{name}/status.
    ("", "nodes/status", "patch", ""),
    # Pools: kopf list+watch; finalizer routectl.io/in-use and progress annotations by patch.
    *((constants.GROUP, constants.POOL_PLURAL, v, "") for v in ("list", "watch", "patch")),
    # Pool status: merge PATCH .../podcidrpools/{name}/status (kube.py patch_pool_status).
    (constants.GROUP, f"{constants.POOL_PLURAL}/status", "patch", ""),
}
CONTROLLER_NAMESPACE_RULES = {
    # routectl/controller/leader.py: GET, JSON-PATCH the Lease by name; POST creates it.
    ("coordination.k8s.io", "leases", "get", "routectl-controller"),
    ("coordination.k8s.io", "leases", "patch", "routectl-controller"),
    ("coordination.k8s.io", "leases", "create", ""),
}
# EventRecorder POSTs core/v1 Events into ROUTECTL_EVENT_NAMESPACE ("default").
CONTROLLER_EVENT_RULES = {("", "events", "create", "")}
AGENT_CLUSTER_RULES = {
    # routectl/agent/kube.py: read_node, list+watch every Node (the overlay), list+watch pools.
    *(("", "nodes", v, "") for v in ("get", "list", "watch")),
    *((constants.GROUP, constants.POOL_PLURAL, v, "") for v in ("list", "watch")),
}
# KubeSource.record_event: a Warning Event on the Node, in "default".
AGENT_EVENT_RULES = {("", "events", "create", "")}
EXPECTED_ROLES = {
    ("ClusterRole", "", "routectl-controller"): CONTROLLER_CLUSTER_RULES,
    ("Role", NAMESPACE, "routectl-controller"): CONTROLLER_NAMESPACE_RULES,
    ("Role", "default", "routectl-controller-events"): CONTROLLER_EVENT_RULES,
    ("ClusterRole", "", "routectl-agent"): AGENT_CLUSTER_RULES,
    ("Role", "default", "routectl-agent-events"): AGENT_EVENT_RULES,
}


# ------------------------------------------------------------------------------------------- helpers
def key(obj: Obj) -> tuple[str, str, str]:
    """(kind, namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return (obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", ""))


def find(objs: list[Obj], kind: str, name: str, namespace: str = "") -> Obj:
    """The one object with this kind/name (and namespace); fails the test if absent."""
    hits = [o for o in objs if key(o) == (kind, namespace, name)]
    assert len(hits) == 1, f"expected exactly one {kind} {namespace}/{name}, found {len(hits)}"
    return hits[0]


def pod_spec(obj: Obj) -> Obj:
    """The pod template spec of a workload."""
    return obj["spec"]["template"]["spec"]


def container(obj: Obj, name: str) -> Obj:
    """A container of a workload by name."""
    hits = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    assert len(hits) == 1, f"{key(obj)} has no single container {name}"
    return hits[0]


def literal_env(ctr: Obj, downward: dict[str, str]) -> dict[str, str]:
    """The container's env as the process would see it, with downward-API fields filled from `downward`."""
    env = {}
    for item in ctr.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert field in downward, f"env {item['name']} reads unexpected field {field}"
            env[item["name"]] = downward[field]
    return env


def granted(role: Obj) -> set[tuple[str, str, str, str]]:
    """Every (apiGroup, resource, verb, resourceName or "") a Role/ClusterRole grants, expanded."""
    out = set()
    for rule in role.get("rules") or []:
        assert not rule.get("nonResourceURLs"), f"{key(role)} grants non-resource URLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [""]:
                        out.add((group, resource, verb, name))
    return out


# ----------------------------------------------------------------------------------------- rendering
def test_every_overlay_renders_with_the_pure_python_renderer() -> None:
    for name in OVERLAYS:
        objs = kustomize_lite.render(DEPLOY / "overlays" / name)
        kinds = Counter(o["kind"] for o in objs)
        assert kinds["Deployment"] == 1 and kinds["DaemonSet"] == 1 and kinds["CustomResourceDefinition"] == 1


# Defined only where kubectl exists (an empty parametrisation would be reported as a skip, and CI
# must not skip); without kubectl, test_kustomize_lite.py pins the renderer's semantics on its own.
if KUBECTL:
    @pytest.mark.parametrize("name", [*OVERLAYS, "base"])
    def test_pure_python_renderer_agrees_with_kubectl(name: str) -> None:
        path = DEPLOY / ("base" if name == "base" else f"overlays/{name}")
        lite = {key(o): o for o in kustomize_lite.render(path)}
        real = {key(o): o for o in render_kubectl(path)}
        assert sorted(lite) == sorted(real)
        for k in real:
            assert lite[k] == real[k], f"{k} differs between kustomize_lite and kubectl kustomize"


def test_base_crd_is_an_exact_copy_of_the_repository_crd() -> None:
    original = REPO / "crds" / "podcidrpool.yaml"
    copy = DEPLOY / "base" / "crds" / "podcidrpool.yaml"
    assert original.is_file(), "crds/podcidrpool.yaml is missing"
    assert copy.read_bytes() == original.read_bytes(), (
        "deploy/base/crds/podcidrpool.yaml is stale: "
        "cp crds/podcidrpool.yaml deploy/base/crds/podcidrpool.yaml"
    )


# ---------------------------------------------------------------------------------------- validation
def test_every_object_is_well_formed(rendered: list[Obj]) -> None:
    problems = [p for obj in rendered for p in k8s_validate.validate(obj)]
    assert problems == []
    keys = [key(o) for o in rendered]
    assert len(keys) == len(set(keys)), "duplicate objects"


def test_namespaces_are_explicit_and_exist(rendered: list[Obj]) -> None:
    namespaces = {o["metadata"]["name"] for o in rendered if o["kind"] == "Namespace"} | {"default"}
    assert NAMESPACE in namespaces
    for obj in rendered:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert ns is None, f"{key(obj)} is cluster-scoped but has a namespace"
        else:
            assert ns in namespaces, f"{key(obj)} has namespace {ns!r}"


def test_crd_matches_the_shared_constants(rendered: list[Obj]) -> None:
    crd = find(rendered, "CustomResourceDefinition", f"{constants.POOL_PLURAL}.{constants.GROUP}")
    spec = crd["spec"]
    assert spec["group"] == constants.GROUP
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == constants.POOL_KIND
    assert spec["names"]["plural"] == constants.POOL_PLURAL
    served = [v for v in spec["versions"] if v["name"] == constants.VERSION]
    assert served and served[0]["served"] and served[0]["storage"]
    assert "status" in (served[0].get("subresources") or {}), "pool status is patched via /status"


def test_workloads_use_existing_service_accounts(rendered: list[Obj]) -> None:
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"])
                for o in rendered if o["kind"] == "ServiceAccount"}
    for obj in rendered:
        if obj["kind"] in WORKLOADS:
            sa = pod_spec(obj).get("serviceAccountName")
            assert (obj["metadata"]["namespace"], sa) in accounts, f"{key(obj)} uses missing SA {sa}"


def test_bindings_resolve(rendered: list[Obj]) -> None:
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"])
                for o in rendered if o["kind"] == "ServiceAccount"}
    bindings = [o for o in rendered if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    for binding in bindings:
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        ns = binding["metadata"].get("namespace", "") if ref["kind"] == "Role" else ""
        assert binding["kind"] == "RoleBinding" or ref["kind"] == "ClusterRole"
        find(rendered, ref["kind"], ref["name"], ns)
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert (subject["namespace"], subject["name"]) in accounts, f"{key(binding)}: {subject}"


def test_rbac_grants_exactly_the_allowed_list(rendered: list[Obj]) -> None:
    roles = {key(o): o for o in rendered if o["kind"] in ("Role", "ClusterRole")}
    assert set(roles) == set(EXPECTED_ROLES)
    for role_key, expected in EXPECTED_ROLES.items():
        got = granted(roles[role_key])
        assert got - expected == set(), f"{role_key} grants more than the code uses: {sorted(got - expected)}"
        assert expected - got == set(), f"{role_key} lacks what the code uses: {sorted(expected - got)}"
    for role in roles.values():
        for rule in role["rules"]:
            words = rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert "*" not in words, f"wildcard in {key(role)}"


def test_every_role_is_bound_to_its_own_service_account(rendered: list[Obj]) -> None:
    for (kind, ns, name) in EXPECTED_ROLES:
        bindings = [b for b in rendered if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
                    and b["roleRef"]["kind"] == kind and b["roleRef"]["name"] == name
                    and (kind == "ClusterRole" or b["metadata"]["namespace"] == ns)]
        assert len(bindings) == 1, f"{kind} {name} should be bound once"
        sa = "routectl-agent" if "agent" in name else "routectl-controller"
        assert bindings[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


# ---------------------------------------------------------------------------------------- controller
def controller_deployment(rendered: list[Obj]) -> Obj:
    """The controller Deployment."""
    return find(rendered, "Deployment", "routectl-controller", NAMESPACE)


def test_controller_runs_on_the_control_plane_before_any_pod_network(rendered: list[Obj]) -> None:
    spec = pod_spec(controller_deployment(rendered))
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "Default", "CoreDNS cannot run before pod networking exists"
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["nodeSelector"]["node-role.kubernetes.io/control-plane"] == ""
    tolerated = {(t.get("key"), t.get("effect")) for t in spec["tolerations"]}
    for needed in [("node-role.kubernetes.io/control-plane", "NoSchedule"),
                   ("node.kubernetes.io/network-unavailable", "NoSchedule"),
                   ("node.kubernetes.io/not-ready", None),  # None: every effect, NoExecute included
                   ("node.cloudprovider.kubernetes.io/uninitialized", "NoSchedule")]:
        assert needed in tolerated, f"controller does not tolerate {needed}"
    for t in spec["tolerations"]:
        assert t["operator"] == "Exists" and t.get("key"), "controller must not tolerate everything"


def test_controller_is_locked_down(rendered: list[Obj]) -> None:
    deployment = controller_deployment(rendered)
    spec = pod_spec(deployment)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec.get("hostPID") is not True and spec.get("hostIPC") is not True
    ctr = container(deployment, "controller")
    sc = ctr["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not sc.get("privileged")
    assert ctr["command"] == ["routectl", "controller"]
    assert all(v.get("hostPath") is None for v in spec.get("volumes") or [])


def test_controller_probes_and_metrics_match_its_health_address(rendered: list[Obj]) -> None:
    ctr = container(controller_deployment(rendered), "controller")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert "metrics" in ports
    env = literal_env(ctr, {"metadata.name": "routectl-controller-0", "metadata.namespace": NAMESPACE})
    address = env.get(controller_config.ENV_VARS["health_address"], controller_config.Config.health_address)
    assert int(address.rsplit(":", 1)[1]) == ports["metrics"]
    for kind in ("livenessProbe", "readinessProbe"):
        probe = ctr[kind]["httpGet"]
        # /healthz, never /readyz: that one is 503 on the standby replica (leader and synced only),
        # so a standby would never become Ready and a rolling update would stall on it.
        assert probe["path"] == "/healthz", kind
        assert probe["port"] in ("metrics", ports["metrics"])


def test_controller_ha_matches_leader_election(rendered: list[Obj]) -> None:
    deployment = controller_deployment(rendered)
    ctr = container(deployment, "controller")
    env = literal_env(ctr, {"metadata.name": "routectl-controller-0", "metadata.namespace": NAMESPACE})
    cfg = controller_config.load_config(env=env)
    if deployment["spec"]["replicas"] > 1:
        assert cfg.leader_elect, "more than one replica needs leader election"
        anti = pod_spec(deployment)["affinity"]["podAntiAffinity"]
        terms = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        assert any(t["topologyKey"] == "kubernetes.io/hostname" for t in terms), "one replica per node"
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxSurge"] == 0, "a surge pod cannot schedule next to a host-network replica"
    else:
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
    # The Lease the code uses is the one RBAC lets it touch, in the namespace it is granted in.
    role = find(rendered, "Role", "routectl-controller", NAMESPACE)
    named = {r for (_, res, _, r) in granted(role) if res == "leases" and r}
    assert named == {cfg.lease_name}
    assert cfg.lease_namespace == NAMESPACE
    events_role = find(rendered, "Role", "routectl-controller-events", cfg.event_namespace)
    assert ("", "events", "create", "") in granted(events_role)


def test_controller_env_is_what_the_config_reads(rendered: list[Obj], overlay: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ctr = container(controller_deployment(rendered), "controller")
    known = set(controller_config.ENV_VARS.values()) | {"POD_NAME"}
    names = [e["name"] for e in ctr["env"]]
    assert len(names) == len(set(names)), "duplicate env names"
    unknown = [n for n in names if n not in known]
    assert unknown == [], f"env vars routectl/controller/config.py does not read: {unknown}"
    env = literal_env(ctr, {"metadata.name": "routectl-controller-0", "metadata.namespace": NAMESPACE})
    for var in [*controller_config.ENV_VARS.values(), "POD_NAME"]:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    cfg = controller_config.load_config()  # as in the pod; raises with a clear message if invalid
    assert cfg.provider == overlay
    assert cfg.identity.startswith("routectl-controller-0"), "POD_NAME should feed the leader identity"


def test_base_alone_names_no_provider() -> None:
    objs = kustomize_lite.render(DEPLOY / "base")
    ctr = container(find(objs, "Deployment", "routectl-controller", NAMESPACE), "controller")
    assert not [e for e in ctr["env"] if e["name"] == "ROUTECTL_PROVIDER"], "overlays choose the provider"


# --------------------------------------------------------------------------------------------- agent
def agent_daemonset(rendered: list[Obj]) -> Obj:
    """The agent DaemonSet."""
    return find(rendered, "DaemonSet", "routectl-agent", NAMESPACE)


def test_agent_has_exactly_the_privileges_it_needs(rendered: list[Obj]) -> None:
    ds = agent_daemonset(rendered)
    spec = pod_spec(ds)
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}], "the agent must run on every node"
    assert spec.get("hostPID") is not True and spec.get("hostIPC") is not True
    ctr = container(ds, "agent")
    sc = ctr["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sorted(sc["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    assert ctr["command"] == ["routectl", "agent"]
    node_name = [e for e in ctr["env"] if e["name"] == "NODE_NAME"]
    assert node_name == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]


def test_agent_shares_the_xtables_lock_and_the_cni_dirs_and_no_other_host_path(rendered: list[Obj]) -> None:
    from routectl.agent import cni

    spec = pod_spec(agent_daemonset(rendered))
    host_paths = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == {
        "xtables-lock": {"path": "/run/xtables.lock", "type": "FileOrCreate"},
        "cni-conf": {"path": cni.DEFAULT_CONF_DIR, "type": "DirectoryOrCreate"},
        "cni-bin-opt": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"},
        "cni-bin-debian": {"path": "/usr/lib/cni", "type": "DirectoryOrCreate"},
    }
    ctr = container(agent_daemonset(rendered), "agent")
    mounts = {m["name"]: (m["mountPath"], m.get("readOnly", False)) for m in ctr["volumeMounts"]}
    assert mounts["xtables-lock"] == ("/run/xtables.lock", False)
    # the agent writes its conflist where the runtime reads it, at the agent's default path ...
    assert mounts["cni-conf"] == (cni.DEFAULT_CONF_DIR, False)
    # ... and only looks at the plugin directories it checks by default, read-only
    bins = {path for name, (path, ro) in mounts.items() if name.startswith("cni-bin") and ro}
    assert bins == set(cni.DEFAULT_BIN_DIRS)
    for name in ("cni-conf", "cni-bin-opt", "cni-bin-debian"):
        assert host_paths[name]["path"] == mounts[name][0], "same path inside and outside"


def test_images_are_set_by_kustomize(rendered: list[Obj]) -> None:
    images = {c["name"]: c["image"] for o in rendered if o["kind"] in WORKLOADS
              for c in pod_spec(o)["containers"]}
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert images["controller"] == f"routectl/controller:{version}", "image tag follows the release"
    assert images["agent"] == f"routectl/agent:{version}"
    for image in images.values():
        assert "." not in image.split("/", 1)[0], "no registry host in the default image names"


# ------------------------------------------------------------------------------------------ examples
EXAMPLES = ("pool-gce.yaml", "pool-aws.yaml", "pool-dualstack.yaml")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_pools_validate_against_the_crd_schema(name: str) -> None:
    import jsonschema

    crd = yaml.safe_load((REPO / "crds" / "podcidrpool.yaml").read_text(encoding="utf-8"))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == constants.VERSION)
    schema = version["schema"]["openAPIV3Schema"]
    path = DEPLOY / "examples" / name
    assert path.is_file(), f"deploy/examples/{name} is missing"
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == constants.API_VERSION and doc["kind"] == constants.POOL_KIND
        assert "namespace" not in doc["metadata"], "PodCIDRPool is cluster-scoped"
        jsonschema.validate(doc, schema)


def test_readme_names_every_overlay_and_the_kcm_flags() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for needed in ("overlays/gce", "overlays/aws", "--allocate-node-cidrs=false",
                   "--configure-cloud-routes=false", "iam/aws-policy.json", "iam/gce-role.yaml"):
        assert needed in text, f"deploy/README.md does not mention {needed}"


def test_every_yaml_file_in_deploy_parses() -> None:
    for path in sorted(Path(DEPLOY).rglob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            list(yaml.safe_load_all(fh))
