"""Every kustomization renders with kubectl and passes the API server's server-side dry-run.

Rendering uses the cluster's own kubectl (`kubectl kustomize`, the kustomize
built into it), as a user's `kubectl apply -k` would; the dry-run checks
each object against the real schemas (Vigil's CRD, the built-in kinds, the
vendored third-party CRDs) and the admission chain, PodSecurity included.
The rest reads the rendered objects: production's limits and
PodDisruptionBudget, the kind overlay's image, the examples' ConfigMaps.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from kit.kube import ROOT

from vigil.devcluster import ClusterClient
from vigil.profile import parse_profile
from vigil.validation.golden import parse_golden_set

MANIFESTS = ROOT / "manifests"
OPERATOR_LABELS = {"app.kubernetes.io/name": "vigil", "app.kubernetes.io/component": "operator"}

# Each kustomization and where a user applies it (None: the objects name their namespaces).
KUSTOMIZATIONS: dict[str, str | None] = {
    "crds": None,
    "manifests/base": None,
    "manifests/overlays/kind": None,
    "manifests/overlays/local": None,
    "manifests/overlays/production": None,
    "manifests/examples/new-model": "test",
    "manifests/examples/replacement": "test",
    "manifests/examples/tweak": "test",
    "manifests/monitoring": None,
    "manifests/gitops/argocd": None,
    "manifests/gitops/flux": None,
}


def render(cluster: ClusterClient, path: str) -> list[dict[str, Any]]:
    text = cluster.kubectl("kustomize", str(ROOT / path)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def test_every_kustomization_in_the_tree_is_covered() -> None:
    found = {
        str(path.parent.relative_to(ROOT)) for path in MANIFESTS.rglob("kustomization.yaml")
    } | {"crds"}
    assert found == set(KUSTOMIZATIONS)


@pytest.mark.parametrize("path", sorted(KUSTOMIZATIONS))
def test_kustomization_passes_server_side_dry_run(
    cluster: ClusterClient,
    vigil_installed: str,
    third_party_crds: None,
    namespace: str,
    path: str,
) -> None:
    docs = render(cluster, path)
    assert docs, f"{path} renders nothing"
    args = ["apply", "--dry-run=server", "-k", str(ROOT / path)]
    if KUSTOMIZATIONS[path] is not None:
        args += ["-n", namespace]
    result = cluster.kubectl(*args)
    # PodSecurity (namespace vigil-system enforces restricted) and deprecated
    # fields answer with warnings: none allowed.
    assert "Warning" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(docs), result.stdout
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout


def test_base_holds_the_operator_and_what_it_needs(cluster: ClusterClient) -> None:
    docs = render(cluster, "manifests/base")
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == [
        "ClusterRole/vigil-operator",
        "ClusterRoleBinding/vigil-operator",
        "CustomResourceDefinition/modeldeployments.vigil.dev",
        "Deployment/vigil-operator",
        "Namespace/vigil-system",
        "PodMonitor/vigil-sidecars",
        "Service/vigil-operator-metrics",
        "ServiceAccount/vigil-operator",
    ]
    # The CRD is the very file docs/crd-reference.md is generated from.
    (crd,) = find(docs, "CustomResourceDefinition")
    source = yaml.safe_load((ROOT / "crds" / "modeldeployments.yaml").read_text())
    assert crd["spec"] == source["spec"]
    # Deleting the CRD deletes every model: a GitOps tool removing the install keeps it.
    assert crd["metadata"]["annotations"] == {
        "kustomize.toolkit.fluxcd.io/prune": "disabled",
        "argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
    }


def test_production_sets_limits_and_a_pdb_that_never_blocks_a_drain(
    cluster: ClusterClient,
) -> None:
    docs = render(cluster, "manifests/overlays/production")
    (deployment,) = find(docs, "Deployment", "vigil-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}

    (pdb,) = find(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == "vigil-system"
    assert pdb["spec"]["selector"]["matchLabels"] == OPERATOR_LABELS
    assert OPERATOR_LABELS.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # One replica: minAvailable 1 would refuse every eviction (drains hang).
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"

    (policy,) = find(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == OPERATOR_LABELS
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]


def test_kind_overlay_runs_the_image_up_sh_loads_and_has_no_podmonitor(
    cluster: ClusterClient,
) -> None:
    docs = render(cluster, "manifests/overlays/kind")
    up = (ROOT / "hack" / "kind" / "up.sh").read_text()
    match = re.search(r"^KIND_IMAGE=(\S+)$", up, re.M)
    assert match, "hack/kind/up.sh must set KIND_IMAGE"
    image = match.group(1)
    assert 'kind load docker-image "$KIND_IMAGE"' in up
    assert "kubectl apply -k manifests/overlays/kind" in up
    (deployment,) = find(docs, "Deployment", "vigil-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image
    assert container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VIGIL_SIDECAR_IMAGE"] == image
    assert not find(docs, "PodMonitor"), "kind has no Prometheus Operator"


def referenced_configmaps(md: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, ConfigMap name, key) for every ConfigMap a ModelDeployment names."""
    spec = md["spec"]
    refs = []
    reference = spec.get("monitoring", {}).get("reference")
    if reference:
        ref = reference["configMapKeyRef"]
        refs.append(("profile", ref["name"], ref["key"]))
    for change in ("replacement", "tweak"):
        for step in spec.get("rollout", {}).get(change, {}).get("steps", []):
            if "validate" in step:
                ref = step["validate"]["goldenSet"]["configMapKeyRef"]
                refs.append(("golden", ref["name"], ref["key"]))
    return refs


@pytest.mark.parametrize("example", ["new-model", "replacement", "tweak"])
def test_example_holds_the_configmaps_its_model_deployment_references(
    cluster: ClusterClient, example: str
) -> None:
    docs = render(cluster, f"manifests/examples/{example}")
    (md,) = find(docs, "ModelDeployment")
    configmaps = {d["metadata"]["name"]: d for d in find(docs, "ConfigMap")}
    refs = referenced_configmaps(md)
    assert [what for what, _, _ in refs].count("profile") == 1
    if example != "new-model":
        assert ("golden", "wine-golden-2", "golden.json") in refs
    for what, name, key in refs:
        assert name in configmaps, f"{example}: ConfigMap {name} missing"
        text = configmaps[name]["data"][key]
        if what == "profile":
            profile = parse_profile(text)
            assert profile.model_version == md["spec"]["model"]["version"]
            assert profile.model_name == md["spec"]["model"]["name"]
            assert len(profile.features) == 13  # sklearn's wine data
        else:
            golden = parse_golden_set(json.loads(text))
            assert golden.model == md["spec"]["model"]["name"]
            assert len(golden.inputs) == len(golden.expected) > 0
    # No hash suffix: the names are the ones the spec gives.
    assert all(not re.search(r"-[a-z0-9]{10}$", name) for name in configmaps)


def test_examples_play_the_three_changes_in_order(cluster: ClusterClient) -> None:
    new, replacement, tweak = (
        find(render(cluster, f"manifests/examples/{name}"), "ModelDeployment")[0]["spec"]
        for name in ("new-model", "replacement", "tweak")
    )
    assert new["model"]["version"] == "1" and "rollout" not in new
    # A replacement: another model version, through validate/shadow/canary.
    assert replacement["model"]["version"] == "2"
    steps = [next(iter(step)) for step in replacement["rollout"]["replacement"]["steps"]]
    assert steps == ["validate", "shadow", "canary", "canary"]
    # A tweak: the same model, only server settings changed, its own lighter policy.
    assert tweak["model"] == replacement["model"]
    assert tweak["monitoring"] == replacement["monitoring"]
    assert tweak["server"] == replacement["server"]
    assert tweak["config"] != replacement["config"]
    assert [next(iter(step)) for step in tweak["rollout"]["tweak"]["steps"]] == ["canary"]


def test_example_data_files_are_what_generate_py_makes() -> None:
    result = subprocess.run(
        [sys.executable, str(MANIFESTS / "examples" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_gitops_objects_point_at_kustomizations_in_this_repository(
    cluster: ClusterClient,
) -> None:
    apps = find(render(cluster, "manifests/gitops/argocd"), "Application")
    assert {app["metadata"]["name"] for app in apps} == {"vigil", "wine"}
    flux = render(cluster, "manifests/gitops/flux")
    kustomizations = find(flux, "Kustomization")
    paths = [app["spec"]["source"]["path"] for app in apps] + [
        k["spec"]["path"].removeprefix("./") for k in kustomizations
    ]
    for path in paths:
        assert (ROOT / path / "kustomization.yaml").is_file(), path
    (model,) = [k for k in kustomizations if k["spec"]["path"].endswith("examples/new-model")]
    assert model["spec"]["dependsOn"] == [{"name": "vigil-operator"}]
    assert model["spec"]["healthChecks"][0]["kind"] == "ModelDeployment"
    (expr,) = model["spec"]["healthCheckExprs"]
    assert "'Ready'" in expr["current"] and "observedGeneration" in expr["current"]
    assert "RolledBack" in expr["failed"]
    (source,) = find(flux, "GitRepository")
    assert all(k["spec"]["sourceRef"]["name"] == source["metadata"]["name"] for k in kustomizations)


def test_argocd_health_check_is_the_one_the_cm_patch_installs() -> None:
    argocd = MANIFESTS / "gitops" / "argocd"
    patch = yaml.safe_load((argocd / "argocd-cm-patch.yaml").read_text())
    script = patch["data"]["resource.customizations.health.vigil.dev_ModelDeployment"]
    assert script == (argocd / "health.lua").read_text()


def test_optional_peering_manifest_passes_server_side_dry_run(
    cluster: ClusterClient, vigil_installed: str
) -> None:
    path = MANIFESTS / "optional" / "peering.yaml"
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(path))
    assert "Warning" not in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) == 4, result.stdout


def test_readme_commands_name_existing_paths() -> None:
    text = (MANIFESTS / "README.md").read_text()
    cited = set(re.findall(r"(?:-k|-f) ((?:manifests|crds)/[\w./-]+)", text))
    assert cited, "manifests/README.md cites no path"
    for path in cited:
        assert (ROOT / path.rstrip("/.")).exists(), path


def test_paths_in_hack_kind_exist() -> None:
    for script in ("up.sh", "e2e.sh"):
        text = (ROOT / "hack" / "kind" / script).read_text()
        for path in re.findall(r"\b((?:manifests|crds|hack)/[\w./-]+)", text):
            assert (ROOT / path.rstrip("/.")).exists(), f"{script}: {path}"
