"""The Helm chart renders what the kustomize manifests install: one operator, two ways.

The default values render the objects of manifests/base (the Namespace
aside: Helm installs into the release's namespace; the PodMonitor is
optional), values-production.yaml those of manifests/overlays/production;
compared whole, RBAC rules and pod spec included, after Helm's own labels
are set aside. Lint and template run with every optional object on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import CHART, EVERYTHING, documents, run, template
from kit.kube import ROOT

#: Labels only Helm adds (the kustomize objects have the other two).
HELM_LABELS = (
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def _without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    labels = doc.get("metadata", {}).get("labels")
    if labels:
        for label in HELM_LABELS:
            labels.pop(label, None)
    return doc


def _by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": _without_helm_labels(d) for d in docs}


def _kustomize(kubectl: Path, folder: str) -> dict[str, dict[str, Any]]:
    docs = documents(run(kubectl, "kustomize", ROOT / folder))
    return {key: doc for key, doc in _by_name(docs).items() if not key.startswith("Namespace/")}


@pytest.mark.parametrize(
    ("folder", "values"),
    [
        ("manifests/base", ["--set=metrics.podMonitor.enabled=true"]),
        ("manifests/overlays/production", [f"--values={CHART / 'values-production.yaml'}"]),
    ],
)
def test_chart_renders_the_same_objects_as_kustomize(helm, kubectl, folder, values) -> None:
    chart = _by_name(template(helm, *values))
    manifests = _kustomize(kubectl, folder)
    assert sorted(chart) == sorted(manifests)
    for key, expected in manifests.items():
        assert chart[key] == expected, key


def test_watched_namespaces_get_role_bindings_instead_of_cluster_wide_rights(helm) -> None:
    docs = _by_name(template(helm, "--set=watchNamespaces={ml,staging}"))
    assert "ClusterRoleBinding/vigil-operator" not in docs
    bindings = [
        d
        for d in template(helm, "--set=watchNamespaces={ml,staging}")
        if d["kind"] == "RoleBinding"
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml", "staging"]
    assert {b["roleRef"]["name"] for b in bindings} == {"vigil-operator"}
    command = docs["Deployment/vigil-operator"]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert "--namespace=ml" in command and "--namespace=staging" in command
    assert "--all-namespaces" not in command


def test_values_reach_the_operator(helm) -> None:
    docs = _by_name(
        template(
            helm,
            "--set=image.repository=registry.example/vigil",
            "--set=image.digest=sha256:" + "a" * 64,
            "--set=sidecar.image=registry.example/sidecar:1",
            "--set=logFormat=plain",
            "--set=verbose=true",
            "--set=healthInterval=15",
        )
    )
    container = docs["Deployment/vigil-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/vigil@sha256:" + "a" * 64
    assert {"--log-format=plain", "--verbose", "--health-interval=15"} <= set(container["command"])
    env = {e["name"]: e for e in container["env"]}
    assert env["VIGIL_SIDECAR_IMAGE"]["value"] == "registry.example/sidecar:1"


def test_a_wrong_log_format_is_refused_by_name(helm) -> None:
    import subprocess

    result = subprocess.run(
        [str(helm), "template", "vigil", str(CHART), "--set=logFormat=xml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "logFormat must be json or plain" in result.stderr


def test_optional_monitoring_objects_carry_the_shared_rules_and_dashboard(helm) -> None:
    docs = _by_name(template(helm, *EVERYTHING))
    rules = yaml.safe_load((ROOT / "manifests/monitoring/rules/vigil-rules.yaml").read_text())
    assert docs["PrometheusRule/vigil"]["spec"] == rules
    dashboard = (ROOT / "manifests/monitoring/dashboards/vigil.json").read_text()
    assert docs["ConfigMap/vigil-dashboard"]["data"]["vigil.json"] == dashboard.rstrip("\n")


def test_the_operators_service_monitor_is_the_monitoring_manifests_one(helm) -> None:
    docs = _by_name(template(helm, *EVERYTHING))
    ours = yaml.safe_load((ROOT / "manifests/monitoring/servicemonitor-operator.yaml").read_text())
    assert docs["ServiceMonitor/vigil-operator"]["spec"] == ours["spec"]
    service = docs["Service/vigil-operator-metrics"]
    selector = docs["ServiceMonitor/vigil-operator"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_helm_lint_passes_with_defaults_and_everything_on(helm) -> None:
    run(helm, "lint", "--strict", CHART)
    run(helm, "lint", "--strict", CHART, *EVERYTHING, "--set=watchNamespaces={ml}")
