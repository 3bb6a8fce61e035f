"""Bad input: what the API server rejects (schema and CEL), what ends in a condition.

Rejections need no operator: the CRD alone refuses them, with the field named.
What the schema cannot see (a name too long for the children, a missing
reference profile) is reported by the running operator as a condition and an
Event, without touching anything that serves.
"""

from __future__ import annotations

from typing import Any

import pytest
from kit.kube import Kube
from kit.modeldeployment import DELETE, MLSERVER_IMAGE, changed
from kit.operator import OperatorProcess
from kit.status import condition, status
from kit.waits import wait_for

from vigil.common import kube_yaml

VALID: dict[str, Any] = {
    "apiVersion": "vigil.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "bad"},
    "spec": {
        "model": {"version": "1"},
        "server": {"image": MLSERVER_IMAGE},
    },
}


def mutate(path: str, value: Any) -> dict[str, Any]:
    """VALID with one field set (DELETE removes it)."""
    return changed(VALID, {path: value})


def fetched(model: dict[str, Any]) -> dict[str, Any]:
    """VALID with an s3:// model and ``model``'s fields over it."""
    fields = {"uri": "s3://models/wine/1/model.tar.gz", **model}
    return changed(VALID, {f"spec.model.{key}": value for key, value in fields.items()})


STEP = {"canary": {"weight": 20}}

# (id, manifest, text the API server's message must contain: the field named)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing-version", mutate("spec.model.version", DELETE), "spec.model.version"),
    ("empty-version", mutate("spec.model.version", ""), "spec.model.version"),
    ("bad-version-chars", mutate("spec.model.version", "v 1"), "spec.model.version"),
    ("missing-image", mutate("spec.server.image", DELETE), "spec.server.image"),
    ("image-with-space", mutate("spec.server.image", "my image"), "spec.server.image"),
    ("missing-server", mutate("spec.server", DELETE), "spec.server"),
    ("replicas-zero", mutate("spec.replicas", 0), "spec.replicas"),
    ("replicas-huge", mutate("spec.replicas", 5000), "spec.replicas"),
    ("port-out-of-range", mutate("spec.server.port", 70000), "spec.server.port"),
    ("port-of-sidecar", mutate("spec.server.port", 8000), "spec.server.port"),
    ("unknown-protocol", mutate("spec.server.protocol", "grpc"), "spec.server.protocol"),
    (
        "readiness-not-a-path",
        mutate("spec.server.readinessPath", "health"),
        "spec.server.readinessPath",
    ),
    ("uri-not-a-uri", mutate("spec.model.uri", "models/wine"), "spec.model.uri"),
    ("config-bad-key", mutate("spec.config", {"bad key": "1"}), "spec.config"),
    ("config-reserved-key", mutate("spec.config", {"STORAGE_URI": "x"}), "spec.config"),
    (
        "window-not-a-duration",
        mutate("spec.monitoring.window", "5 minutes"),
        "spec.monitoring.window",
    ),
    (
        "drift-method-unknown",
        mutate("spec.monitoring.drift", {"method": "kl"}),
        "spec.monitoring.drift.method",
    ),
    (
        "drift-warning-above-threshold",
        mutate("spec.monitoring.drift", {"warning": 0.5, "threshold": 0.2}),
        "spec.monitoring.drift.warning",
    ),
    (
        "prometheus-without-url",
        mutate("spec.monitoring.metrics", {"source": "prometheus"}),
        "spec.monitoring.metrics.prometheusURL",
    ),
    (
        "error-rate-above-one",
        mutate("spec.monitoring.slo", {"maxErrorRate": 1.5}),
        "spec.monitoring.slo.maxErrorRate",
    ),
    (
        "reference-without-key",
        mutate("spec.monitoring.reference", {"configMapKeyRef": {"name": "ref"}}),
        "spec.monitoring.reference.configMapKeyRef.key",
    ),
    (
        "step-with-two-kinds",
        mutate(
            "spec.rollout",
            {"replacement": {"steps": [{"canary": {"weight": 20}, "shadow": {"percent": 50}}]}},
        ),
        "spec.rollout.replacement.steps[0]",
    ),
    (
        "step-empty",
        mutate("spec.rollout", {"tweak": {"steps": [{}]}}),
        "spec.rollout.tweak.steps[0]",
    ),
    (
        "canary-weight-100",
        mutate("spec.rollout", {"replacement": {"steps": [{"canary": {"weight": 100}}]}}),
        "spec.rollout.replacement.steps[0].canary.weight",
    ),
    (
        "shadow-percent-zero",
        mutate("spec.rollout", {"replacement": {"steps": [{"shadow": {"percent": 0}}]}}),
        "spec.rollout.replacement.steps[0].shadow.percent",
    ),
    (
        "env-value-and-valueFrom",
        mutate(
            "spec.server.env",
            [
                {
                    "name": "A",
                    "value": "1",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ],
        ),
        "spec.server.env[0]",
    ),
    ("unknown-field", mutate("spec.modle", {"version": "1"}), "modle"),
    ("model-name-bad-chars", mutate("spec.model.name", "wine model"), "spec.model.name"),
    ("model-name-too-long", mutate("spec.model.name", "m" * 64), "spec.model.name"),
    ("version-too-long", mutate("spec.model.version", "1" * 64), "spec.model.version"),
    ("uri-too-long", mutate("spec.model.uri", "s3://" + "b" * 2048), "spec.model.uri"),
    ("image-too-long", mutate("spec.server.image", "i" * 513), "spec.server.image"),
    (
        "command-item-too-long",
        mutate("spec.server.command", ["x" * 4097]),
        "spec.server.command[0]",
    ),
    ("args-too-many", mutate("spec.server.args", ["a"] * 129), "spec.server.args"),
    (
        "env-name-starts-with-digit",
        mutate("spec.server.env", [{"name": "1A"}]),
        "spec.server.env[0].name",
    ),
    (
        "env-duplicate-name",
        mutate("spec.server.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.server.env[1]",
    ),
    (
        "env-valueFrom-empty",
        mutate("spec.server.env", [{"name": "A", "valueFrom": {}}]),
        "spec.server.env[0].valueFrom",
    ),
    (
        "env-valueFrom-two-sources",
        mutate(
            "spec.server.env",
            [
                {
                    "name": "A",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.name"},
                        "configMapKeyRef": {"name": "c", "key": "k"},
                    },
                }
            ],
        ),
        "spec.server.env[0].valueFrom",
    ),
    (
        "resource-quantity-not-a-quantity",
        mutate("spec.server.resources", {"requests": {"cpu": "lots"}}),
        "spec.server.resources.requests.cpu",
    ),
    (  # as in every custom resource: a quantity is an integer or a string (docs say so)
        "resource-quantity-bare-fraction",
        mutate("spec.server.resources", {"requests": {"cpu": 0.5}}),
        "spec.server.resources.requests.cpu",
    ),
    (
        "resource-name-with-space",
        mutate("spec.server.resources", {"requests": {"bad key": "1"}}),
        "spec.server.resources.requests",
    ),
    (
        "resource-quantity-negative",
        mutate("spec.server.resources", {"limits": {"memory": "-1Gi"}}),
        "spec.server.resources.limits",
    ),
    (
        "resource-request-above-limit",
        mutate("spec.server.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
        "spec.server.resources.requests",
    ),
    ("port-zero", mutate("spec.server.port", 0), "spec.server.port"),
    ("port-of-sidecar-metrics", mutate("spec.server.port", 9090), "spec.server.port"),
    ("port-of-sidecar-feedback", mutate("spec.server.port", 8001), "spec.server.port"),
    ("replicas-not-a-number", mutate("spec.replicas", "two"), "spec.replicas"),
    ("paused-not-a-boolean", mutate("spec.paused", "yes"), "spec.paused"),
    ("config-value-not-a-string", mutate("spec.config", {"THREADS": 4}), "spec.config.THREADS"),
    ("config-vigil-prefix", mutate("spec.config", {"VIGIL_UPSTREAM": "x"}), "spec.config"),
    ("window-zero", mutate("spec.monitoring.window", "0s"), "spec.monitoring.window"),
    (
        "window-beyond-a-year",
        mutate("spec.monitoring.window", "9000h"),
        "spec.monitoring.window",
    ),
    (
        "window-overflowing-duration",
        mutate("spec.monitoring.window", "9" * 30 + "h"),
        "spec.monitoring.window",
    ),
    (
        "latency-slo-not-a-duration",
        mutate("spec.monitoring.slo", {"maxLatencyP95": "fast"}),
        "spec.monitoring.slo.maxLatencyP95",
    ),
    (
        "latency-slo-beyond-the-histogram",
        mutate("spec.monitoring.slo", {"maxLatencyP95": "10s"}),
        "spec.monitoring.slo.maxLatencyP95",
    ),
    (
        "drift-warning-negative",
        mutate("spec.monitoring.drift", {"warning": -1}),
        "spec.monitoring.drift.warning",
    ),
    (
        "prometheus-url-not-http",
        mutate("spec.monitoring.metrics", {"source": "prometheus", "prometheusURL": "ftp://p"}),
        "spec.monitoring.metrics.prometheusURL",
    ),
    (
        "metrics-source-unknown",
        mutate("spec.monitoring.metrics", {"source": "statsd"}),
        "spec.monitoring.metrics.source",
    ),
    (
        "reference-name-not-dns",
        mutate("spec.monitoring.reference", {"configMapKeyRef": {"name": "Ref_1", "key": "k"}}),
        "spec.monitoring.reference.configMapKeyRef.name",
    ),
    (
        "sidecar-max-body-too-small",
        mutate("spec.monitoring.sidecar", {"maxBodyBytes": 10}),
        "spec.monitoring.sidecar.maxBodyBytes",
    ),
    (
        "sidecar-feature-cap-zero",
        mutate("spec.monitoring.sidecar", {"featureCap": 0}),
        "spec.monitoring.sidecar.featureCap",
    ),
    (
        "steps-too-many",
        mutate("spec.rollout", {"replacement": {"steps": [STEP] * 17}}),
        "spec.rollout.replacement.steps",
    ),
    (
        "validate-without-golden-set",
        mutate("spec.rollout", {"replacement": {"steps": [{"validate": {}}]}}),
        "spec.rollout.replacement.steps[0].validate.goldenSet",
    ),
    (
        "pause-written-as-null",  # `- pause:`: YAML's null, dropped, so the step holds nothing
        mutate("spec.rollout", {"tweak": {"steps": [{"pause": None}]}}),
        'spec.rollout.tweak.steps[0]: Invalid value: "object": a rollout step holds exactly '
        "one of validate, shadow, canary, pause (a pause without duration is written `pause: {}`",
    ),
    (
        "pause-duration-not-a-duration",
        mutate("spec.rollout", {"tweak": {"steps": [{"pause": {"duration": "soon"}}]}}),
        "spec.rollout.tweak.steps[0].pause.duration",
    ),
    (
        "canary-without-weight",
        mutate("spec.rollout", {"tweak": {"steps": [{"canary": {"duration": "1m"}}]}}),
        "spec.rollout.tweak.steps[0].canary.weight",
    ),
    (
        "shadow-min-requests-negative",
        mutate("spec.rollout", {"replacement": {"steps": [{"shadow": {"minRequests": -1}}]}}),
        "spec.rollout.replacement.steps[0].shadow.minRequests",
    ),
    (
        "analysis-interval-zero",
        mutate("spec.rollout", {"analysis": {"interval": "0s"}}),
        "spec.rollout.analysis.interval",
    ),
    (
        "analysis-failure-limit-zero",
        mutate("spec.rollout", {"analysis": {"failureLimit": 0}}),
        "spec.rollout.analysis.failureLimit",
    ),
    (
        "analysis-min-agreement-above-one",
        mutate("spec.rollout", {"analysis": {"minAgreement": 2}}),
        "spec.rollout.analysis.minAgreement",
    ),
    (
        "analysis-tolerance-negative",
        mutate("spec.rollout", {"analysis": {"tolerance": {"absolute": -0.5}}}),
        "spec.rollout.analysis.tolerance.absolute",
    ),
    (
        "analysis-tolerance-not-an-object",
        mutate("spec.rollout", {"analysis": {"tolerance": 0.05}}),
        "spec.rollout.analysis.tolerance",
    ),
    (
        "performance-gate-accuracy-and-mae",
        mutate("spec.rollout", {"analysis": {"performance": {"minAccuracy": 0.9, "maxMAE": 1}}}),
        "spec.rollout.analysis.performance.maxMAE",
    ),
    (
        "performance-gate-without-a-limit",
        mutate("spec.rollout", {"analysis": {"performance": {"minLabels": 10}}}),
        "spec.rollout.analysis.performance",
    ),
    (
        "performance-gate-accuracy-above-one",
        mutate("spec.rollout", {"analysis": {"performance": {"minAccuracy": 1.5}}}),
        "spec.rollout.analysis.performance.minAccuracy",
    ),
    (
        "performance-gate-min-labels-zero",
        mutate("spec.rollout", {"analysis": {"performance": {"maxDrop": 0.05, "minLabels": 0}}}),
        "spec.rollout.analysis.performance.minLabels",
    ),
    (
        "shadow-relative-tolerance-negative",
        mutate(
            "spec.rollout",
            {"replacement": {"steps": [{"shadow": {"tolerance": {"relative": -0.1}}}]}},
        ),
        "spec.rollout.replacement.steps[0].shadow.tolerance.relative",
    ),
    (
        "progress-deadline-zero",
        mutate("spec.rollout", {"progressDeadline": "0ms"}),
        "spec.rollout.progressDeadline",
    ),
    (
        "http-route-not-dns",
        mutate("spec.rollout", {"trafficRouting": {"gatewayAPI": {"httpRoute": "Bad_Route"}}}),
        "spec.rollout.trafficRouting.gatewayAPI.httpRoute",
    ),
    # The model's artifact (vigil-fetch): each field only with the schemes it serves.
    ("s3-bucket-too-short", mutate("spec.model.uri", "s3://b/m.tar.gz"), "spec.model.uri"),
    ("sha256-not-hex", fetched({"sha256": "z" * 64}), "spec.model.sha256"),
    (
        "sha256-on-a-pvc",
        fetched({"uri": "pvc://models/wine", "sha256": "a" * 64}),
        "spec.model.sha256",
    ),
    (
        "sha256-on-a-prefix",
        fetched({"uri": "s3://models/wine/", "sha256": "a" * 64}),
        "spec.model.sha256",
    ),
    ("path-relative", fetched({"path": "models"}), "spec.model.path"),
    ("path-root", fetched({"path": "/"}), "spec.model.path"),
    ("path-root-twice", fetched({"path": "//"}), "spec.model.path"),
    ("uri-pvc-path-from-root", mutate("spec.model.uri", "pvc://models//wine"), "spec.model.uri"),
    ("path-escapes", fetched({"path": "/mnt/../etc"}), "spec.model.path"),
    ("path-without-placed-uri", fetched({"uri": "gs://m/w", "path": "/m"}), "spec.model.path"),
    (
        "storage-on-http",
        fetched({"uri": "http://h/m.tar.gz", "storage": {"region": "eu"}}),
        "spec.model.storage",
    ),
    (
        "secret-on-https",
        fetched({"uri": "https://h/m", "storage": {"secretRef": {"name": "s"}}}),
        "spec.model.storage",
    ),
    (
        "endpoint-not-a-url",
        fetched({"storage": {"endpoint": "seaweedfs:8333"}}),
        "spec.model.storage.endpoint",
    ),
    ("fetch-on-a-pvc", fetched({"uri": "pvc://models/wine", "fetch": {}}), "spec.model.fetch"),
    ("size-limit-zero", fetched({"fetch": {"sizeLimit": "0"}}), "spec.model.fetch.sizeLimit"),
    (
        "raw-server-shadow-step",
        changed(
            VALID,
            {
                "spec.server.protocol": "raw",
                "spec.rollout": {"replacement": {"steps": [{"shadow": {}}]}},
            },
        ),
        "spec.rollout",
    ),
    (
        "raw-server-performance-gate",
        changed(
            VALID,
            {
                "spec.server.protocol": "raw",
                "spec.rollout": {"analysis": {"performance": {"minAccuracy": 0.9}}},
            },
        ),
        "spec.rollout.analysis.performance",
    ),
    ("model-path-the-root-by-a-dot", fetched({"path": "/."}), "spec.model.path"),
    (
        "sha256-on-a-bucket",
        fetched({"uri": "s3://models", "sha256": "a" * 64}),
        "spec.model.sha256",
    ),
    ("https-folder", fetched({"uri": "https://artifacts.example.com/wine/2/"}), "spec.model.uri"),
    (
        "https-credentials",
        fetched({"uri": "https://user:secret@artifacts.example.com/wine/2/model.tar.gz"}),
        "spec.model.uri",
    ),
    (
        "model-path-in-config",
        changed(fetched({}), {"spec.config": {"MODEL_PATH": "/m"}}),
        "spec.config",
    ),
    (
        "model-path-over-the-writable-tmp",
        changed(fetched({"path": "/tmp"}), {"spec.server.readOnlyRootFilesystem": True}),
        "spec.model.path",
    ),
    (
        "ca-key-a-path",
        fetched(
            {
                "uri": "https://artifacts.example.com/wine/2/model.tar.gz",
                "storage": {"caConfigMapRef": {"name": "ca", "key": "/ca.pem"}},
            }
        ),
        "spec.model.storage.caConfigMapRef.key",
    ),
    (
        "gpu-request-without-its-limit",
        mutate("spec.server.resources", {"requests": {"nvidia.com/gpu": 1}}),
        "spec.server.resources.requests",
    ),
    (
        "gpu-request-unlike-its-limit",
        mutate(
            "spec.server.resources",
            {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}},
        ),
        "spec.server.resources.requests",
    ),
    (
        "gpu-without-its-domain",
        mutate("spec.server.resources", {"limits": {"gpu": 1}}),
        "spec.server.resources.limits",
    ),
    (
        "uri-scheme-in-capitals",
        mutate("spec.model.uri", "HTTPS://models.example/wine.tar.gz"),
        "spec.model.uri",
    ),
    (
        "latency-slo-zero",
        mutate("spec.monitoring.slo", {"maxLatencyP95": "0s"}),
        "spec.monitoring.slo.maxLatencyP95",
    ),
    (
        "performance-gate-without-a-reference",
        mutate("spec.rollout", {"analysis": {"performance": {"minAccuracy": 0.9}}}),
        "spec.rollout.analysis.performance",
    ),
    (
        "hugepages-request-without-its-limit",
        mutate("spec.server.resources", {"requests": {"hugepages-2Mi": "128Mi", "memory": "1Gi"}}),
        "spec.server.resources.requests",
    ),
    (
        "fetch-gpu-request-without-its-limit",
        fetched({"fetch": {"resources": {"requests": {"nvidia.com/gpu": 1}}}}),
        "spec.model.fetch.resources.requests",
    ),
    (
        "fetch-gpu-without-its-domain",
        fetched({"fetch": {"resources": {"limits": {"gpu": 1}}}}),
        "spec.model.fetch.resources.limits",
    ),
    (
        "fetch-request-over-limit",
        fetched(
            {"fetch": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "256Mi"}}}}
        ),
        "spec.model.fetch.resources.requests",
    ),
]


def test_there_are_at_least_thirty_rejections_with_distinct_ids() -> None:
    assert len(CASES) >= 30
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("manifest", "field"), [(m, f) for _, m, f in CASES], ids=[case_id for case_id, _, _ in CASES]
)
def test_api_server_rejects_invalid_spec_naming_the_field(
    kube: Kube, vigil_installed: str, manifest: dict[str, Any], field: str
) -> None:
    result = kube.run("apply", "-f", "-", input=kube_yaml.dump(manifest), check=False)
    assert result.returncode != 0, f"accepted: {manifest}"
    assert field in result.stderr, result.stderr
    assert kube.get("md", "bad") is None


@pytest.mark.parametrize("threshold", [0.1, 0.05])
def test_a_drift_threshold_below_the_usual_warning_is_admitted_alone(
    kube: Kube, vigil_installed: str, threshold: float
) -> None:
    """No schema default for drift.warning: with one (0.1), the API server checked the
    warning < threshold rule against a value the user never wrote."""
    manifest = mutate("spec.monitoring.drift", {"method": "jsd", "threshold": threshold})
    result = kube.run("apply", "--dry-run=server", "-f", "-", input=kube_yaml.dump(manifest))
    assert "(server dry run)" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"nvidia.com/gpu": 1, "cpu": "1"}, "limits": {"nvidia.com/gpu": 1}},
        {"limits": {"nvidia.com/gpu": "2", "hugepages-2Mi": "64Mi", "memory": "1Gi"}},
    ],
    ids=["gpu-request-equal-to-its-limit", "gpu-limit-alone"],
)
def test_a_gpu_asked_for_as_a_pod_takes_it_is_admitted(
    kube: Kube, vigil_installed: str, resources: dict[str, Any]
) -> None:
    manifest = mutate("spec.server.resources", resources)
    result = kube.run("apply", "--dry-run=server", "-f", "-", input=kube_yaml.dump(manifest))
    assert "(server dry run)" in result.stdout, result.stdout


def _ready(kube: Kube, name: str = "bad") -> dict[str, Any]:
    return condition(status(kube, name), "Ready")


def test_name_too_long_for_children_ends_in_a_condition_and_an_event(
    kube: Kube, operator: OperatorProcess
) -> None:
    name = "a-model-deployment-name-that-is-far-too-long-for-its-children"
    kube.apply(mutate("metadata.name", name))
    ready = wait_for(lambda: _ready(kube, name), timeout=30, what="a Ready condition")
    assert ready["status"] == "False"
    assert ready["reason"] == "InvalidSpec"
    assert "at most 55" in ready["message"]
    md = kube.get("md", name)
    assert md is not None and md["status"]["phase"] == "Failed"
    assert kube.items("deployments") == []
    wait_for(lambda: kube.events("InvalidSpec"), timeout=15, what="an InvalidSpec Event")
    operator.assert_no_errors()


def test_missing_reference_profile_holds_until_it_appears(
    kube: Kube, operator: OperatorProcess
) -> None:
    reference = {"configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}}
    kube.apply(mutate("spec.monitoring", {"reference": reference}))
    ready = wait_for(
        lambda: (c := _ready(kube)) and c["reason"] != "Deploying" and c,
        timeout=30,
        what="a Ready condition",
    )
    assert ready["reason"] == "ReferenceNotFound", ready
    assert "wine-reference" in ready["message"]
    assert kube.items("deployments") == []
    wait_for(lambda: kube.events("ReferenceNotFound"), timeout=15, what="the Event")

    kube.run("create", "configmap", "wine-reference", "--from-literal=profile.json={}")
    wait_for(
        lambda: _ready(kube).get("status") == "True",
        timeout=60,
        what="Ready once the reference ConfigMap exists",
    )
    (deployment,) = kube.items("deployments")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["reference"]["configMap"]["name"] == "wine-reference"
    operator.assert_no_errors()


def test_a_new_model_whose_pods_cannot_be_created_ends_in_deploy_failed(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.run("create", "quota", "cpu", "--hard=requests.cpu=1")
    manifest = mutate("spec.server.resources", {"requests": {"cpu": "2"}})
    kube.apply(manifest)
    ready = wait_for(
        lambda: (c := _ready(kube)).get("reason") == "DeployFailed" and c,
        timeout=90,
        what="Ready=False with reason DeployFailed",
    )
    assert "quota" in ready["message"]
    md = kube.get("md", "bad")
    assert md is not None and md["status"]["phase"] == "Failed"
    wait_for(lambda: kube.events("DeployFailed"), timeout=15, what="a DeployFailed Event")
    operator.assert_no_errors()


def test_a_model_with_every_artifact_field_is_admitted(kube: Kube, vigil_installed: str) -> None:
    manifest = fetched(
        {
            "sha256": "ab" * 32,
            "path": "/models/wine",
            "storage": {
                "secretRef": {"name": "wine-artifacts"},
                "endpoint": "http://seaweedfs.storage.svc:8333",
                "region": "eu-west-1",
                "pathStyle": True,
                "caConfigMapRef": {"name": "corp-ca", "key": "ca.crt"},
            },
            "fetch": {
                "sizeLimit": "2Gi",
                "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            },
        }
    )
    result = kube.run("apply", "--dry-run=server", "-f", "-", input=kube_yaml.dump(manifest))
    assert "(server dry run)" in result.stdout, result.stdout
