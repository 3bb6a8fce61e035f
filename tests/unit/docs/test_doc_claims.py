"""Claims in prose, each pinned to the behaviour it describes.

A sentence cannot be parsed into a check, so each test here names the text
(a CRD description, a sentence of a page) and runs the code it describes:
change either and the test says which claim to look at again. Each was
found false once (issue 13), except the numbers, which are cheap to keep.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import pytest
from code_catalogue import ROLLOUT
from core_world import RolloutWorld, spec
from crd_kit import with_crd_defaults
from doc_pages import CODE_BLOCK, ROOT, prose
from figures_kit import figures

import yaml_kit
from vigil.core import drift, health, health_status, judges, naming, reconcile, rollout, status
from vigil.core import spec as spec_module
from vigil.core.candidate import RolloutInputs
from vigil.core.desired import (
    FEEDBACK_PORT,
    METRICS_PORT,
    SERVER_SHUTDOWN_DELAY_SECONDS,
    SIDECAR_PORT,
    SIDECAR_PORT_NAME,
    SIDECAR_SHUTDOWN_DELAY_SECONDS,
    SIDECAR_USER_ID,
    Owner,
    RevisionInfo,
    desired_deployment,
    desired_revision_service,
    sidecar_settings,
)
from vigil.core.revision import classify_change, compute_identity, compute_revision
from vigil.core.rollout import GoldenResult
from vigil.core.spec import parse_spec
from vigil.core.vocabulary import ChangeKind as Change
from vigil.core.window import FAMILY_LABELS
from vigil.plugin.cli import EXIT_OUTCOME_UNKNOWN, EXIT_STILL_PENDING
from vigil.plugin.status_cli import register
from vigil.sidecar import metrics, monitor, wire
from vigil.sidecar.config import OVERRIDES, Settings, settings_from_mapping

CRD_PATH = ROOT / "crds" / "modeldeployments.yaml"
CRD = yaml_kit.load(CRD_PATH.read_text())
SCHEMA = next(v for v in CRD["spec"]["versions"] if v.get("storage"))["schema"]["openAPIV3Schema"]
OWNER = Owner("wine", "ml", "uid")


def field(path: str) -> dict[str, Any]:
    """The schema of a field: ``spec.rollout.analysis.failureLimit``."""
    node = SCHEMA
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def description(path: str) -> str:
    return " ".join(field(path)["description"].split())


def page(path: str) -> str:
    return prose((ROOT / path).read_text(), spans=True)


def says(text: str, words: str, where: str) -> None:
    assert words in text, f"{where} no longer says {words!r}: check the claim against the code"


# -- the CRD's descriptions (kubectl explain) ------------------------------------------------

MINIMAL = {"model": {"version": "1"}, "server": {"image": "server:1"}}


def test_max_body_bytes_larger_bodies_get_413_from_the_sidecar() -> None:
    says(description("spec.monitoring.sidecar.maxBodyBytes"), "413", "maxBodyBytes")
    spec = parse_spec("wine", {**MINIMAL, "monitoring": {"sidecar": {"maxBodyBytes": 2048}}})
    settings = sidecar_settings(OWNER, spec, RevisionInfo("abc1234", "id", "stable"))
    # The sidecar answers 413 above limits.maxBodyBytes: tests/unit/sidecar/test_sidecar_faults.py.
    assert settings["limits"] == {"maxBodyBytes": 2048}


def test_drift_warning_keeps_drift_detected_false_with_reason_drift_warning() -> None:
    text = description("spec.monitoring.drift.warning")
    says(text, "reason DriftWarning", "drift.warning")
    says(text, "stays False", "drift.warning")
    policy = health.HealthPolicy(drift_warning=0.1, drift_threshold=0.2)
    report = health.HealthReport(
        verdict="Healthy",
        requests=100,
        drift_score=0.15,
        drift_level="warning",
        drift_features={"alcohol": 0.15},
    )
    drift = next(
        c for c in health_status.health_conditions(report, policy) if c.type == "DriftDetected"
    )
    assert (drift.status, drift.reason) == (False, "DriftWarning")


def failed_checks_until_rollback(limit: int) -> int:
    step = rollout.Step("canary", duration_seconds=60, weight=50)
    policy = rollout.RolloutPolicy(steps=(step,), failure_limit=limit, interval_seconds=1)
    slow = figures(requests=100, latency_p95=9.0)
    observations = rollout.Observations(candidate_ready=True, replicas=2, figures=slow)
    state = rollout.RolloutState()
    for check in range(1, limit + 5):
        decision = rollout.decide(policy, state, observations, now=10.0 * check)
        if decision.action == "rollback":
            return check
        state = decision.state
    raise AssertionError("never rolled back")


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_failure_limit_rolls_back_at_that_many_failed_checks(limit: int) -> None:
    text = description("spec.rollout.analysis.failureLimit")
    says(text, "Failed checks in a row that roll the candidate back", "failureLimit")
    says(text, "1 = the first failed check does", "failureLimit")
    assert failed_checks_until_rollback(limit) == limit


def test_min_agreement_is_a_gate_of_shadow_steps_only() -> None:
    text = description("spec.rollout.analysis.minAgreement")
    says(text, "a shadow step's compared predictions", "minAgreement")
    says(text, "canary steps have no agreement gate", "minAgreement")
    policy = rollout.RolloutPolicy(steps=())
    half = figures(requests=100, compared=100, agreement=0.5)
    names = {
        kind: {gate.name for gate in rollout.gates(rollout.Step(kind), policy, half)}
        for kind in ("shadow", "canary")
    }
    assert "agreement" in names["shadow"] and "agreement" not in names["canary"]


def test_shadow_min_requests_counts_compared_predictions_at_least_analysis_min_requests() -> None:
    says(
        description("spec.rollout.replacement.steps.[].shadow.minRequests"),
        "Compared predictions needed before the step can be judged (at least "
        "rollout.analysis.minRequests)",
        "shadow.minRequests",
    )
    step = rollout.Step("shadow", duration_seconds=60, percent=100, min_requests=10)
    policy = rollout.RolloutPolicy(steps=(step,), min_requests=50)
    seen = figures(requests=999, compared=30, agreement=1.0)
    observations = rollout.Observations(candidate_ready=True, replicas=2, figures=seen)
    decision = rollout.decide(policy, rollout.RolloutState(), observations, now=1.0)
    assert (decision.reason, decision.message) == (
        "InsufficientData",
        "30 compared predictions < 50 needed",
    )


def test_the_operators_defaults_are_the_crds() -> None:
    """The reference shows the CRD's defaults; the operator must assume the same ones."""
    steps = [
        {"validate": {"goldenSet": {"configMapKeyRef": {"name": "g", "key": "k"}}}},
        {"shadow": {}},
        {"canary": {"weight": 20}},
    ]
    written = {**MINIMAL, "rollout": {"replacement": {"steps": steps}, "analysis": {}}}
    stored = with_crd_defaults(written, field("spec"))
    assert stored != written
    # The whole typed spec, rollout included (parse_policy reads the same below).
    assert parse_spec("wine", written) == parse_spec("wine", stored)
    assert spec_module.monitoring_settings(written) == spec_module.monitoring_settings(stored)
    for change in ("replacement", "tweak"):
        assert spec_module.parse_policy(written["rollout"], change) == spec_module.parse_policy(
            stored["rollout"], change
        )


# -- the pages ---------------------------------------------------------------------------------


def test_a_new_sidecar_image_is_a_tweak() -> None:
    says(page("manifests/README.md"), "rolls every model to a new revision as a **tweak**", "")
    says(page("docs/concepts.md"), "rolled out as a **tweak**", "docs/concepts.md")
    spec = parse_spec("wine", MINIMAL)
    change = classify_change(
        stable_revision=compute_revision(spec, "vigil:1"),
        stable_identity=compute_identity(spec),
        desired_revision=compute_revision(spec, "vigil:2"),
        desired_identity=compute_identity(spec),
    )
    assert change is Change.TWEAK


def security_network_policy() -> dict[str, Any]:
    text = (ROOT / "docs" / "security.md").read_text()
    section = text[text.index("### A NetworkPolicy for the model pods") :]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert block, "docs/security.md: the model pods' NetworkPolicy is gone"
    return dict(yaml_kit.load(block.group(1)))


def test_the_model_pods_network_policy_lets_in_the_ports_vigil_uses() -> None:
    policy = security_network_policy()
    assert policy["kind"] == "NetworkPolicy"
    (selected,) = policy["spec"]["podSelector"]["matchExpressions"]
    assert selected == {"key": naming.LABEL_MODEL_DEPLOYMENT, "operator": "Exists"}
    rules = policy["spec"]["ingress"]
    ports = [{p["port"] for p in rule["ports"]} for rule in rules]
    # Live traffic, shadow copies, labels and the sidecars' peers; the operator
    # (readiness, golden replay, scrapes).
    assert ports[0] == {SIDECAR_PORT, FEEDBACK_PORT}
    assert ports[1] == {SIDECAR_PORT, METRICS_PORT}
    operator = yaml_kit.load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    labels = operator["spec"]["template"]["metadata"]["labels"]
    (peer,) = rules[1]["from"]
    assert peer["podSelector"]["matchLabels"] == labels
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": operator["metadata"]["namespace"]
    }


def test_the_operator_reaches_candidates_on_the_sidecar_port() -> None:
    """Readiness and the golden replay go to ``<name>-<revision>:80``, i.e. the sidecar's 8000."""
    service = desired_revision_service(OWNER, "abc1234", naming.ROLE_CANDIDATE)
    assert service["spec"]["ports"][0]["targetPort"] == SIDECAR_PORT_NAME
    spec = parse_spec("wine", MINIMAL)
    info = RevisionInfo("abc1234", "id", naming.ROLE_CANDIDATE)
    pod = desired_deployment(OWNER, spec, info, sidecar_image="vigil:1", replicas=1)
    ports = {
        port["name"]: port["containerPort"]
        for container in pod["spec"]["template"]["spec"]["containers"]
        for port in container.get("ports", ())
    }
    assert ports[SIDECAR_PORT_NAME] == SIDECAR_PORT == 8000 and METRICS_PORT == 9090


@pytest.mark.parametrize(
    ("path", "section"),
    [
        ("docs/troubleshooting.md", "### MetricsUnavailable"),
        ("docs/howto/prometheus.md", "## Use the direct source"),
        ("docs/security.md", "### A NetworkPolicy for the model pods"),
    ],
)
def test_network_policy_advice_names_both_sidecar_ports(path: str, section: str) -> None:
    text = CODE_BLOCK.sub("", (ROOT / path).read_text())
    start = text.index(section)
    end = text.find("\n#", start + len(section))
    advice = text[start : end if end > 0 else None]
    assert "NetworkPolic" in advice
    assert str(SIDECAR_PORT) in advice and str(METRICS_PORT) in advice, (path, section)


#: (page, words with {} where the number stands, the code's value)
NUMBERS = [
    ("docs/health.md", "Judged from {} input rows per bin", drift.ROWS_PER_SLOT),
    ("docs/health.md", "by more than {} points", health.MISSING_RATE_TOLERANCE * 100),
    # One query per Prometheus URL and pair of window lengths: a part per family, one for pods.
    ("docs/health.md", "a cycle sends one query ({} parts", len(FAMILY_LABELS) + 1),
    ("docs/health.md", "and the labels', of {} parts)", len(FAMILY_LABELS) + 1),
    ("docs/howto/prometheus.md", "| one PromQL query ({} parts", len(FAMILY_LABELS) + 1),
    # The report's range queries: two per family and two for the pods.
    ("docs/howto/manual-control.md", "two for the pods, {} today", 2 * len(FAMILY_LABELS) + 2),
    ("docs/rollouts.md", "at least {} rows per bin in use", drift.ROWS_PER_SLOT),
    (
        "docs/rollouts.md",
        "`margins.inputDrift` (default {})",
        spec_module.DEFAULT_INPUT_DRIFT_MARGIN,
    ),
    ("docs/rollouts.md", "`margins.latency` (default {})", spec_module.DEFAULT_LATENCY_MARGIN),
    ("docs/rollouts.md", "at most {} % of requests slower", judges.P95_TAIL * 100),
    ("docs/rollouts.md", "`analysis.confidence` (default {})", spec_module.DEFAULT_CONFIDENCE),
    (
        "docs/concepts.md",
        "the stable's drift + `margins.inputDrift` (default {})",
        spec_module.DEFAULT_INPUT_DRIFT_MARGIN,
    ),
    ("docs/concepts.md", "keeps serving for {} s", SIDECAR_SHUTDOWN_DELAY_SECONDS),
    ("docs/concepts.md", "`preStop` sleep of {} s", SERVER_SHUTDOWN_DELAY_SECONDS),
    ("docs/concepts.md", "for the last {} revisions", status.HISTORY_LIMIT),
    ("docs/troubleshooting.md", "looks again every {} seconds", reconcile.RECHECK_SECONDS),
    ("docs/troubleshooting.md", "so at most {})", 63 - 7 - 1),
    ("docs/sidecar.md", "| a request head over {} KiB |", wire.MAX_HEADER_BYTES / 1024),
    ("docs/sidecar.md", "a bounded queue every {} ms", monitor.FLUSH_INTERVAL * 1000),
    ("docs/sidecar.md", "batches of more than {} values", monitor.SMALL_BATCH),
    ("docs/sidecar.md", "buckets {} ms ..", metrics.LATENCY_BUCKETS[0] * 1000),
    ("docs/sidecar.md", "buckets 1 ms .. {} s", metrics.LATENCY_BUCKETS[-1]),
    ("docs/security.md", "runs as uid/gid {} ", SIDECAR_USER_ID),
    ("docs/howto/manual-control.md", "It exits {} when no answer came", EXIT_STILL_PENDING),
    ("docs/howto/manual-control.md", "It exits {} when the answer cannot", EXIT_OUTCOME_UNKNOWN),
    ("docs/rollouts.md", "none in time: exit {},", EXIT_STILL_PENDING),
]


@pytest.mark.parametrize(("path", "words", "value"), NUMBERS, ids=[n[1] for n in NUMBERS])
def test_numbers_in_the_docs_are_the_codes(path: str, words: str, value: float) -> None:
    text = page(path)
    pattern = re.escape(words).replace(re.escape("{}"), r"(\d+(?:\.\d+)?)")
    found = re.search(pattern, " ".join(text.split()))
    assert found, f"{path} no longer says {words!r}: check the claim against the code"
    assert float(found.group(1)) == pytest.approx(value), f"{path}: {found.group(0)} vs {value}"


def test_the_longest_name_the_docs_allow_is_the_codes() -> None:
    assert naming.name_problem("w" * 55, 7) is None
    assert naming.name_problem("w" * 56, 7) is not None


def test_the_status_view_refreshes_as_documented() -> None:
    says((ROOT / "docs/howto/manual-control.md").read_text(), "refresh every 2 s (--interval)", "")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["status", "wine"]).interval == 2.0


# -- docs/sidecar.md ----------------------------------------------------------------------------

#: Keys of the settings sample that show an example, not the default.
SIDECAR_EXAMPLES = {"model_name", "model_version", "revision", "reference_profile", "shadow"}


def sidecar_sample() -> dict[str, Any]:
    text = (ROOT / "docs" / "sidecar.md").read_text()
    section = text[text.index("## Settings file") :]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert block, "docs/sidecar.md: the settings sample is gone"
    return dict(yaml_kit.load(block.group(1)))


def test_the_sidecar_settings_sample_is_accepted_and_shows_the_defaults() -> None:
    loaded = settings_from_mapping(sidecar_sample())
    defaults = Settings()
    differ = {
        item.name: (getattr(loaded, item.name), getattr(defaults, item.name))
        for item in dataclasses.fields(Settings)
        if item.name not in SIDECAR_EXAMPLES | {"readiness_path"}
        and getattr(loaded, item.name) != getattr(defaults, item.name)
    }
    assert not differ, f"docs/sidecar.md's settings sample differs from the defaults: {differ}"
    assert loaded.effective_readiness_path == defaults.effective_readiness_path


def test_the_sidecar_overrides_listed_are_the_sidecars() -> None:
    text = prose((ROOT / "docs" / "sidecar.md").read_text(), spans=True)
    listed = set(re.findall(r"`(--[a-z-]+)`/`(VIGIL_[A-Z_]+)`", text))
    assert listed == {("--config", "VIGIL_SIDECAR_CONFIG"), *OVERRIDES.values()}


# -- docs/concepts.md, "Revisions" ---------------------------------------------------------------

BASE_SPEC: dict[str, Any] = {
    "model": {"name": "wine", "version": "1"},
    "server": {"image": "server:1"},
    "monitoring": {"reference": {"configMapKeyRef": {"name": "ref", "key": "profile.json"}}},
}
SHAPES_THE_PODS = {
    "`model.name`": {"model": {"name": "vine", "version": "1"}},
    "`model.version`": {"model": {"name": "wine", "version": "2"}},
    "`model.uri`": {"model": {"name": "wine", "version": "1", "uri": "s3://m/1"}},
    "`image`": {"server": {"image": "server:2"}},
    "`command`": {"server": {"image": "server:1", "command": ["serve"]}},
    "`args`": {"server": {"image": "server:1", "args": ["--fast"]}},
    "`env`": {"server": {"image": "server:1", "env": [{"name": "A", "value": "1"}]}},
    "`resources`": {"server": {"image": "server:1", "resources": {"limits": {"cpu": "1"}}}},
    "`port`": {"server": {"image": "server:1", "port": 9000}},
    "`protocol`": {"server": {"image": "server:1", "protocol": "v1"}},
    "`readinessPath`": {"server": {"image": "server:1", "readinessPath": "/ready"}},
    "`config`": {"config": {"WORKERS": "2"}},
    "the reference profile's ConfigMap and key": {
        "monitoring": {"reference": {"configMapKeyRef": {"name": "ref2", "key": "profile.json"}}}
    },
    "`monitoring.sidecar.maxBodyBytes`": {"monitoring": {"sidecar": {"maxBodyBytes": 2048}}},
    "`featureCap`": {"monitoring": {"sidecar": {"featureCap": 5}}},
}
SHAPES_NOTHING = {
    "`replicas`": {"replicas": 3},
    "`rollout`": {"rollout": {"tweak": {"steps": [{"canary": {"weight": 50}}]}}},
    "`paused`": {"paused": True},
    "the SLOs": {"monitoring": {"slo": {"maxErrorRate": 0.05}}},
    "the drift thresholds": {"monitoring": {"drift": {"warning": 0.2, "threshold": 0.3}}},
    "the metrics source": {"monitoring": {"metrics": {"source": "direct"}}},
}


def revision_of(change: Mapping[str, Any]) -> str:
    spec = copy.deepcopy(BASE_SPEC)
    for key, value in change.items():
        if key == "monitoring":
            spec["monitoring"] = {**spec["monitoring"], **value}
        else:
            spec[key] = value
    return compute_revision(parse_spec("wine", spec), "vigil:1")


def test_the_revision_is_made_of_what_concepts_lists() -> None:
    text = page("docs/concepts.md")
    base = revision_of({})
    for words, change in SHAPES_THE_PODS.items():
        says(text, words, "concepts.md")
        assert revision_of(change) != base, f"{words} does not change the revision"
    assert compute_revision(parse_spec("wine", BASE_SPEC), "vigil:2") != base  # sidecar image
    for words, change in SHAPES_NOTHING.items():
        says(text, words, "concepts.md")
        assert revision_of(change) == base, f"{words} changes the revision"


def test_the_kubectl_get_columns_shown_are_the_crds() -> None:
    """`kubectl get md` prints NAME and the printer columns without a priority."""
    text = (ROOT / "manifests" / "README.md").read_text()
    shown = re.search(r"kubectl get md -n ml +# (.*)", text)
    assert shown, "manifests/README.md no longer shows the columns of kubectl get md"
    version = next(v for v in CRD["spec"]["versions"] if v.get("storage"))
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert shown.group(1).split() == " ".join(["NAME", *columns]).upper().split()


def test_a_rollouts_metrics_hold_leaves_metrics_available_alone() -> None:
    """MetricsAvailable is the health loop's word on the serving revision, not the candidate's."""
    says(
        page("docs/rollouts.md"),
        "the `MetricsAvailable` condition speaks of the serving revision",
        "docs/rollouts.md",
    )
    world = RolloutWorld()
    world.spec = spec("1", 2, rollout=ROLLOUT)
    world.reconcile()
    world.pods_ready(world.status["stable"]["revision"])
    world.reconcile()
    available = {"type": "MetricsAvailable", "status": "True", "reason": "MetricsCollected"}
    world.status["conditions"].append({**available, "message": "1532 requests over 5m"})
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.reconcile()
    world.pods_ready(world.status["candidate"]["revision"])
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    world.reconcile()
    assert world.status["candidate"]["reason"] == "ValidationPending"  # the first step
    world.inputs = RolloutInputs(
        metrics_available=False, metrics_error="scrape failed", golden=GoldenResult(1, 1)
    )
    for _ in range(5):
        world.pods_ready(world.status["candidate"]["revision"])
        world.reconcile()
    assert world.status["candidate"]["reason"] == "MetricsUnavailable"
    assert world.condition("Progressing")["reason"] == "MetricsUnavailable"
    assert {k: world.condition("MetricsAvailable")[k] for k in available} == available
