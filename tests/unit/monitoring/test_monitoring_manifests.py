"""The generated PrometheusRule is current, and the PodMonitor matches the scrape job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml_kit

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "manifests" / "monitoring"


def test_prometheusrule_is_generated_from_the_current_rules_file() -> None:
    result = subprocess.run(
        [sys.executable, str(MONITORING / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_prometheusrule_holds_the_same_groups() -> None:
    rule = yaml_kit.load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    plain = yaml_kit.load((MONITORING / "rules" / "vigil-rules.yaml").read_text())
    assert rule["spec"] == plain


def test_podmonitor_selects_vigil_pods_and_relabels_like_the_scrape_config() -> None:
    monitor = yaml_kit.load((ROOT / "manifests" / "base" / "podmonitor.yaml").read_text())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["selector"]["matchExpressions"] == [
        {"key": "vigil.dev/model-deployment", "operator": "Exists"}
    ]
    [endpoint] = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"

    [job] = yaml_kit.load((MONITORING / "prometheus-scrape-config.yaml").read_text())
    wanted = {
        r["target_label"]: r["source_labels"]
        for r in job["relabel_configs"]
        if r.get("target_label")
    }
    got = {
        r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"] if r.get("targetLabel")
    }
    assert got == wanted
    assert set(got) == {"namespace", "pod", "model_deployment"}


def test_operator_servicemonitor_selects_the_metrics_service_and_keeps_its_labels() -> None:
    monitor = yaml_kit.load((MONITORING / "servicemonitor-operator.yaml").read_text())
    service = yaml_kit.load((ROOT / "manifests" / "base" / "service.yaml").read_text())
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    # The operator's series carry `namespace` (the model's): the target's must not win.
    assert endpoint["honorLabels"] is True
