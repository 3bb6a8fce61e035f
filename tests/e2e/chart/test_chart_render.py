"""The Helm chart renders what the kustomize manifests install: one operator, two ways.

The default values render the objects of manifests/base (the Namespace
aside: Helm installs into the release's namespace; the PodMonitor is
optional), values-production.yaml those of manifests/overlays/production
(on a cluster that serves the PodMonitor kind: production's `auto`);
compared whole, RBAC rules and pod spec included, after Helm's own labels
are set aside. Lint and template run with every optional object on.
values.schema.json refuses at render what the operator would refuse at
run time or silently ignore; each values file in use passes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import (
    CHART,
    EVERYTHING,
    KUBE_VERSION,
    WITH_PODMONITOR,
    documents,
    install_values,
    refused,
    run,
    template,
)
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
        (
            "manifests/overlays/production",
            [f"--values={CHART / 'values-production.yaml'}", WITH_PODMONITOR],
        ),
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


def test_a_zero_health_interval_reaches_the_operator_where_the_schema_is_skipped(helm) -> None:
    """Only "" (or null) means the operator's default: a 0 the schema did not see is not
    silently 30 s, it reaches the operator, which refuses it by name at start."""

    def command(*values: str) -> list[str]:
        docs = _by_name(template(helm, *values))
        return docs["Deployment/vigil-operator"]["spec"]["template"]["spec"]["containers"][0][
            "command"
        ]

    for default in ((), ("--set=healthInterval=null",)):
        assert not any(arg.startswith("--health-interval") for arg in command(*default))
    assert "--health-interval=0" in command("--skip-schema-validation", "--set=healthInterval=0")


#: How helm starts a refusal by values.schema.json (each failing value follows, by its path).
SCHEMA_REFUSAL = "values don't meet the specifications of the schema"
#: The templates' own checks, as they run where the schema is skipped.
NO_SCHEMA = "--skip-schema-validation"


def test_a_wrong_log_format_is_refused_by_name(helm) -> None:
    message = refused(helm, "--set=logFormat=xml")
    assert SCHEMA_REFUSAL in message and "at '/logFormat'" in message
    assert "logFormat must be json or plain" in refused(helm, NO_SCHEMA, "--set=logFormat=xml")


PRODUCTION = f"--values={CHART / 'values-production.yaml'}"


def test_production_values_render_the_podmonitor_only_where_the_cluster_serves_it(helm) -> None:
    """Without the Prometheus Operator's CRDs a PodMonitor fails the whole install or sync."""
    assert "PodMonitor/vigil-sidecars" not in _by_name(template(helm, PRODUCTION))
    assert "PodMonitor/vigil-sidecars" in _by_name(template(helm, PRODUCTION, WITH_PODMONITOR))
    # true insists (the install fails loudly where the kind is missing); false never.
    forced = template(helm, PRODUCTION, "--set=metrics.podMonitor.enabled=true")
    assert "PodMonitor/vigil-sidecars" in _by_name(forced)
    off = template(helm, PRODUCTION, WITH_PODMONITOR, "--set=metrics.podMonitor.enabled=false")
    assert "PodMonitor/vigil-sidecars" not in _by_name(off)
    message = refused(helm, "--set=metrics.podMonitor.enabled=yes")
    assert SCHEMA_REFUSAL in message and "at '/metrics/podMonitor/enabled'" in message
    message = refused(helm, NO_SCHEMA, "--set=metrics.podMonitor.enabled=yes")
    assert "metrics.podMonitor.enabled must be true, false or auto" in message


def test_the_chart_refuses_kubernetes_older_than_its_model_pods_need(helm) -> None:
    # The model pods' preStop sleep action is off by default before 1.30 (and the CRD's
    # CEL quantity() rules, which a 1.28 API server refuses in a new CRD, need 1.29).
    chart = (CHART / "Chart.yaml").read_text()
    assert 'kubeVersion: ">=1.30.0-0"' in chart
    run(helm, "template", "vigil", CHART, "--kube-version=1.30.0")
    result = subprocess.run(
        [str(helm), "template", "vigil", str(CHART), "--kube-version=1.29.14"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "kubeVersion" in result.stderr


def _operator(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return docs["Deployment/vigil-operator"]["spec"]["template"]["spec"]["containers"][0]


def test_port_0_turns_the_metrics_and_health_ports_off_without_a_port_0_anywhere(helm) -> None:
    docs = _by_name(template(helm, "--set=metrics.port=0", "--set=healthPort=0"))
    container = _operator(docs)
    assert {"--metrics-port=0", "--health-port=0"} <= set(container["command"])
    assert "ports" not in container and "livenessProbe" not in container
    assert "Service/vigil-operator-metrics" not in docs
    only_metrics = _operator(_by_name(template(helm, "--set=healthPort=0")))
    assert [p["name"] for p in only_metrics["ports"]] == ["metrics"]
    assert "livenessProbe" not in only_metrics
    only_health = _by_name(template(helm, "--set=metrics.port=0"))
    assert [p["name"] for p in _operator(only_health)["ports"]] == ["health"]
    assert _operator(only_health)["livenessProbe"]["httpGet"]["port"] == "health"
    assert "Service/vigil-operator-metrics" not in only_health
    message = refused(helm, "--set=metrics.port=0", "--set=metrics.serviceMonitor.enabled=true")
    assert "metrics.serviceMonitor.enabled=true needs metrics.port" in message


def test_a_service_monitor_without_the_metrics_service_is_refused_by_name(helm) -> None:
    message = refused(
        helm, "--set=metrics.serviceMonitor.enabled=true", "--set=metrics.service.enabled=false"
    )
    assert "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true" in message


def test_a_prometheus_rule_without_the_operators_metrics_is_refused_by_name(helm) -> None:
    # Most of its alerts read the operator's gauges: with /metrics off they never fire.
    message = refused(helm, "--set=metrics.prometheusRule.enabled=true", "--set=metrics.port=0")
    assert "metrics.prometheusRule.enabled=true needs metrics.port other than 0" in message


def test_pod_labels_cannot_take_the_selectors_labels(helm) -> None:
    # The Deployment's selector would no longer match its pods: the API server refuses it.
    message = refused(helm, "--set=podLabels.app\\.kubernetes\\.io/component=x")
    assert "podLabels must not set app.kubernetes.io/component" in message
    deployment = _by_name(template(helm, "--set=podLabels.team=ml"))["Deployment/vigil-operator"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "ml"


def test_the_operator_writes_its_temporary_files_to_its_emptydir(helm) -> None:
    """The image's TMPDIR lies on the read-only root file system."""
    container = _operator(_by_name(template(helm)))
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["TMPDIR"] == mounts["tmp"] == "/tmp"


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


def test_the_pull_policy_is_always_rendered_and_passed_on_to_model_pods(helm) -> None:
    """Left out, Kubernetes pulls a :latest image Always: a local image with no registry
    behind it then fails (ErrImagePull), in the operator's pod and in every model pod."""

    def policies(*values: str) -> tuple[str, str]:
        container = _operator(_by_name(template(helm, *values)))
        env = {e["name"]: e.get("value") for e in container["env"]}
        return container["imagePullPolicy"], env["VIGIL_SIDECAR_IMAGE_PULL_POLICY"]

    assert policies() == ("IfNotPresent", "IfNotPresent")
    assert policies("--set=image.tag=latest") == ("IfNotPresent", "IfNotPresent")
    assert policies("--set=image.pullPolicy=Never") == ("Never", "Never")
    assert policies("--set=image.pullPolicy=Always") == ("Always", "Always")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        # The operator exits 2 on these (a crash loop), or silently uses 30 s for 0.
        ("healthInterval=abc", "/healthInterval"),
        ("healthInterval=-5", "/healthInterval"),
        ("healthInterval=0", "/healthInterval"),
        ("healthInterval=0.0", "/healthInterval"),
        ("metrics.port=70000", "/metrics/port"),
        ("healthPort=-1", "/healthPort"),
        ("image.pullPolicy=always", "/image/pullPolicy"),
        ("image.digest=0123abcd", "/image/digest"),
        ("metrics.podMonitor.interval=15", "/metrics/podMonitor/interval"),
        # A number loses digits on its way to the image reference (a YAML file's 1.10 is 1.1).
        ("image.tag=20240101", "/image/tag"),
        ("podLabels.team=1", "/podLabels/team"),
        ("watchNamespaces={ml,ml}", "/watchNamespaces"),
        # A misspelt value would be ignored without a word.
        ("metrics.prot=9091", "additional properties 'prot'"),
        ("imagePullPolicy=Never", "additional properties 'imagePullPolicy'"),
    ],
)
def test_values_the_operator_would_refuse_or_ignore_are_refused_at_render(
    helm, value: str, path: str
) -> None:
    message = refused(helm, f"--set={value}")
    assert SCHEMA_REFUSAL in message and path in message, message


def test_values_the_operator_accepts_still_render(helm) -> None:
    # helm --set gives 2.5 as a string, 15 as a number: both reach the operator.
    for interval in ("15", "2.5", "0.5"):
        command = _operator(_by_name(template(helm, f"--set=healthInterval={interval}")))
        assert f"--health-interval={interval}" in command["command"]
    default = _operator(_by_name(template(helm)))["command"]
    assert not any(arg.startswith("--health-interval") for arg in default)


def test_metrics_and_health_on_one_port_are_refused_by_name(helm) -> None:
    """The operator binds /metrics and /healthz apart: one port for both cannot start."""
    for same in (["--set=metrics.port=8080"], ["--set=healthPort=9090"]):
        assert "metrics.port and healthPort must differ" in refused(helm, *same)
    # 0 is off, not a port: both off is no clash.
    template(helm, "--set=metrics.port=0", "--set=healthPort=0")


def test_every_values_file_in_use_passes_the_schema(helm, tmp_path: Path) -> None:
    """The chart's own files, Flux's pair (manifests/gitops/flux/helmrelease.yaml), and what
    test_chart_install.py installs with."""
    production = CHART / "values-production.yaml"
    run(helm, "lint", "--strict", CHART, KUBE_VERSION, f"--values={production}")
    template(helm, f"--values={CHART / 'values.yaml'}", f"--values={production}")
    installed = install_values(
        tmp_path / "values.yaml",
        "vigil.local/vigil:0123456789abcdef",
        "chart-models-x1",
        "vigil-e2e",
    )
    run(helm, "lint", "--strict", CHART, KUBE_VERSION, f"--values={installed}")


def test_a_yaml_number_as_image_tag_is_refused_by_name(helm, tmp_path: Path) -> None:
    # Helm reads a values file's numbers as floats: 20240101 rendered ":2.0240101e+07" into
    # the operator's and every sidecar's image, 1.10 the other tag ":1.1".
    for tag in ("20240101", "1.10"):
        values = tmp_path / "values.yaml"
        values.write_text(f"image:\n  tag: {tag}\n")
        message = refused(helm, f"--values={values}")
        assert SCHEMA_REFUSAL in message and "/image/tag" in message, message
        values.write_text(f'image:\n  tag: "{tag}"\n')
        assert f"vigil:{tag}" in _operator(_by_name(template(helm, f"--values={values}")))["image"]


def test_a_zero_scrape_interval_renders_as_a_duration_string(helm) -> None:
    # Unquoted, "0" rendered as the number 0, which the PodMonitor's schema refuses.
    docs = template(
        helm, "--set=metrics.podMonitor.enabled=true", "--set-string=metrics.podMonitor.interval=0"
    )
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["interval"] == "0"


def test_the_podmonitor_scrapes_only_the_watched_namespaces(helm) -> None:
    # A second release beside this one (disjoint namespaces) would otherwise scrape every
    # sidecar again, and the prometheus source read each count doubled.
    def selector(*values: str) -> dict[str, Any]:
        docs = template(helm, "--set=metrics.podMonitor.enabled=true", *values)
        (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
        return monitor["spec"]["namespaceSelector"]

    assert selector() == {"any": True}
    assert selector("--set=watchNamespaces={ml,staging}") == {"matchNames": ["ml", "staging"]}
