"""Issue 3 acceptance: a brand-new model, scaling, blue/green switch, restart, deletion.

Each test has its own namespace and its own operator process, which runs
with the vigil-operator ServiceAccount's token (manifests/base/rbac.yaml).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import yaml
from kit.kube import MD_LABEL, REVISION_LABEL, ROOT, Kube, safe
from kit.modeldeployment import MLSERVER_IMAGE, changed
from kit.operator import OperatorProcess
from kit.status import condition, stable, status
from kit.waits import wait_for, wait_settled

# The example is a kustomization: the ModelDeployment and its reference profile ConfigMap.
EXAMPLE_DIR = ROOT / "manifests" / "examples" / "new-model"
EXAMPLE = EXAMPLE_DIR / "modeldeployment.yaml"


def example(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The example ModelDeployment with each dotted path of ``changes`` set."""
    return changed(yaml.safe_load(EXAMPLE.read_text()), changes or {})


def apply(kube: Kube, manifest: dict[str, Any]) -> None:
    """The (changed) example ModelDeployment, after the ConfigMaps it references."""
    rendered = yaml.safe_load_all(kube.cluster.kubectl("kustomize", str(EXAMPLE_DIR)).stdout)
    kube.apply(*[d for d in rendered if d and d["kind"] == "ConfigMap"], manifest)


def ready_condition(kube: Kube) -> dict[str, Any]:
    return condition(status(kube), "Ready")


def resource_versions(kube: Kube, name: str = "wine") -> dict[str, str]:
    versions = {}
    for kind, items in kube.children(name).items():
        for item in items:
            versions[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    md = kube.get("md", name)
    assert md is not None
    versions["md"] = md["metadata"]["resourceVersion"]
    return versions


def test_new_model_gets_deployment_service_configmap_and_becomes_ready(
    kube: Kube, operator: OperatorProcess
) -> None:
    # PodSecurity "restricted": the model pods must be admitted under it.
    kube.cluster.kubectl(
        "label",
        "namespace",
        kube.namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    )
    # Exactly what a newcomer types.
    kube.run("apply", "-k", str(EXAMPLE_DIR))

    kube.wait_ready("md/wine")
    md = kube.get("md", "wine")
    assert md is not None
    found = kube.children()
    assert len(found["deployments"]) == 1
    services = {item["metadata"]["name"]: item for item in found["services"]}
    assert sorted(services) == ["wine", "wine-peers"]
    revision = md["status"]["stable"]["revision"]
    deployment = found["deployments"][0]
    assert deployment["metadata"]["name"] == f"wine-{revision}"
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["server", "sidecar"]
    assert containers[0]["image"] == MLSERVER_IMAGE
    assert containers[1]["image"] == "ghcr.io/vigil-dev/vigil:e2e"
    http_ports = [
        (c["name"], p["containerPort"])
        for c in containers
        for p in c.get("ports", [])
        if p.get("name") == "http"
    ]
    assert http_ports == [("sidecar", 8000)]
    assert {cm["metadata"]["name"] for cm in found["configmaps"]} == {f"wine-{revision}-sidecar"}
    settings = json.loads(found["configmaps"][0]["data"]["sidecar.json"])
    assert settings["revision"] == revision
    assert settings["model"] == {"name": "wine", "version": "1"}

    service = services["wine"]
    assert service["spec"]["selector"] == {MD_LABEL: "wine", REVISION_LABEL: revision}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # The sidecars find each other (labels join at the pod holding the prediction).
    peers = services["wine-peers"]
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"] == {MD_LABEL: "wine"}
    for item in (deployment, service, peers, found["configmaps"][0]):
        labels = item["metadata"]["labels"]
        assert labels[MD_LABEL] == "wine"
        assert "vigil.dev/role" in labels
        (owner,) = item["metadata"]["ownerReferences"]
        assert owner["uid"] == md["metadata"]["uid"]
        assert owner["controller"] is True

    # The pods were admitted under PodSecurity "restricted" and are Ready.
    pods = kube.pods(f"{MD_LABEL}=wine")
    assert len(pods) == 2

    # Kopf keeps no bookkeeping on the object (level-triggered handlers): nothing
    # in annotations, nothing in status.
    annotations = md["metadata"].get("annotations") or {}
    assert not [key for key in annotations if "kopf" in key]
    assert "kopf" not in md["status"]
    assert not md["metadata"].get("finalizers")  # owner references clean up; no finalizer
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    assert md["status"]["phase"] == "Healthy"
    assert [entry["revision"] for entry in md["status"]["history"]] == [revision]
    assert kube.events("Deployed")

    # The columns and the documentation a newcomer sees.
    table = kube.run("get", "md").stdout
    header = table.splitlines()[0].split()
    for column in ("MODEL", "VERSION", "PHASE", "READY", "ERROR", "RATE", "P95", "DRIFT", "AGE"):
        assert column in header
    assert table.splitlines()[1].split()[:2] == ["wine", "wine"]  # status.model, not pruned
    assert "Healthy" in table
    wide = kube.run("get", "md", "-o", "wide").stdout
    assert {"REVISION", "CANDIDATE", "REASON"} <= set(wide.splitlines()[0].split())
    assert revision in wide and "Available" in wide
    explain = kube.cluster.kubectl("explain", "md.spec.monitoring").stdout
    assert "reference" in explain and "training-data profile" in explain
    assert "window" in explain and "Sliding window" in explain

    # The operator's own metrics moved.
    assert operator.total("vigil_operator_reconciles_total", outcome="changed") >= 1
    assert operator.value("vigil_operator_reconcile_duration_seconds_count") >= 1
    operator.wait_total("vigil_operator_model_deployments", 1, phase="Healthy")
    operator.assert_no_errors()


def test_replicas_scale_the_same_deployment_in_place(kube: Kube, operator: OperatorProcess) -> None:
    # A GitOps tool's tracking label on the parent must never reach the children.
    tracked = {"app.kubernetes.io/instance": "argocd-app"}
    apply(kube, example({"metadata.labels": tracked}))
    kube.wait_ready("md/wine")
    before = status(kube)["stable"]["revision"]

    apply(kube, example({"metadata.labels": tracked, "spec.replicas": 4}))
    wait_for(
        lambda: (
            stable(status(kube)).get("readyReplicas") == 4
            and ready_condition(kube).get("status") == "True"
        ),
        timeout=60,
        what="4 ready replicas",
    )
    found = kube.children()
    assert [d["metadata"]["name"] for d in found["deployments"]] == [f"wine-{before}"]
    assert found["deployments"][0]["spec"]["replicas"] == 4
    assert status(kube)["stable"]["revision"] == before
    assert status(kube)["revision"] == before
    assert len(status(kube)["history"]) == 1
    assert kube.events("Scaled")
    for items in kube.children().values():
        for item in items:
            assert "app.kubernetes.io/instance" not in item["metadata"]["labels"]
    pods = kube.pods(f"{MD_LABEL}=wine")
    assert pods and all("app.kubernetes.io/instance" not in p["metadata"]["labels"] for p in pods)
    operator.assert_no_errors()


def _ready_pods_behind_service(kube: Kube) -> tuple[str | None, int] | None:
    """(revision the Service selects, its Ready pods); None for a torn or failed read."""
    view = safe(lambda: kube.service_view("wine"), None)
    if view is None or view.ready is None:
        return None
    return (view.selector or {}).get(REVISION_LABEL), len(view.ready)


def test_new_version_is_switched_blue_green_without_losing_ready_pods(
    kube: Kube, operator: OperatorProcess
) -> None:
    apply(kube, example())
    kube.wait_ready("md/wine")
    old = status(kube)["stable"]["revision"]

    # Sample what the Service selects from before the change until after the switch.
    observations: list[tuple[str | None, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen = _ready_pods_behind_service(kube)
            if seen is not None:
                observations.append(seen)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wait_for(lambda: observations, timeout=10, what="a first observation of the Service")
    apply(
        kube, example({"spec.model": {"name": "wine", "version": "2", "uri": "s3://models/wine/2"}})
    )

    def switched() -> str | None:
        new = stable(status(kube)).get("revision")
        names = [d["metadata"]["name"] for d in kube.children()["deployments"]]
        return new if new and new != old and names == [f"wine-{new}"] else None

    new = wait_for(switched, timeout=90, interval=0.2, what="the blue/green switch")
    seen_new = len(observations)
    wait_for(lambda: len(observations) > seen_new, timeout=10, what="an observation after it")
    stop.set()
    sampler.join(timeout=10)
    revisions = [revision for revision, _ in observations]
    assert revisions[0] == old and revisions[-1] == new, observations
    empty = [item for item in observations if item[1] == 0]
    assert not empty, f"the Service selected no Ready pod at some observation: {observations}"
    assert {revision for revision, _ in observations} <= {old, new}

    kube.wait_ready("md/wine")
    final = status(kube)
    assert final["stable"]["modelVersion"] == "2"
    assert "candidate" not in final
    history = [(entry["revision"], entry["outcome"]) for entry in final["history"]]
    assert history == [(new, "Promoted"), (old, "Deployed")]
    assert final["history"][0]["change"] == "replacement"
    assert kube.events("Switched")
    assert kube.get("configmap", f"wine-{old}-sidecar") is None
    operator.assert_no_errors()


def test_restarted_operator_changes_nothing(kube: Kube, operator: OperatorProcess) -> None:
    apply(kube, example())
    kube.wait_ready("md/wine")
    # Some history first: a switch to version 2 (relabelled Deployment, two history entries).
    first = status(kube)["stable"]["revision"]
    apply(kube, example({"spec.model": {"name": "wine", "version": "2"}}))
    wait_for(
        lambda: (
            stable(status(kube)).get("revision") not in (None, first)
            and len(kube.children()["deployments"]) == 1
        ),
        timeout=60,
        what="the switch to version 2",
    )
    kube.wait_ready("md/wine")
    assert len(status(kube)["history"]) == 2
    operator.stop()
    # The snapshot the restarted operator finds, once two reads a second apart agree: the
    # switch's late writes (kube-controller-manager's Deployment status) have landed.
    versions = wait_settled(lambda: resource_versions(kube), what="the children's versions")
    before = status(kube)
    operator.start()
    wait_for(
        lambda: operator.total("vigil_operator_reconciles_total", outcome="unchanged") >= 1,
        timeout=30,
        what="the restarted operator to resume the ModelDeployment",
    )
    time.sleep(3)
    assert resource_versions(kube) == versions
    assert status(kube) == before
    assert operator.total("vigil_operator_reconciles_total", outcome="changed") == 0
    assert not operator.samples("vigil_operator_writes_total")
    operator.assert_no_errors()


def test_deleting_the_model_deployment_garbage_collects_every_child(
    kube: Kube, operator: OperatorProcess
) -> None:
    apply(kube, example())
    kube.wait_ready("md/wine")
    assert all(kube.children().values())

    kube.run("delete", "md/wine", "--wait=true", "--timeout=60s")
    wait_for(
        lambda: not any(kube.children().values()) and not kube.pods(f"{MD_LABEL}=wine"),
        timeout=60,
        what="garbage collection of the Deployments, Service, ConfigMaps and pods",
    )
    operator.assert_no_errors()


def test_deleted_children_are_recreated_from_the_watch(
    kube: Kube, operator: OperatorProcess
) -> None:
    apply(kube, example())
    kube.wait_ready("md/wine")
    revision = status(kube)["stable"]["revision"]

    kube.run("delete", "service", "wine")
    wait_for(
        lambda: (
            (svc := kube.get("service", "wine"))
            and svc["spec"]["selector"].get(REVISION_LABEL) == revision
        ),
        timeout=30,
        what="the Service to be recreated",
    )
    kube.run("delete", "deployment", f"wine-{revision}")
    wait_for(
        lambda: (
            (d := kube.get("deployment", f"wine-{revision}"))
            and not d["metadata"].get("deletionTimestamp")
        ),
        timeout=30,
        what="the Deployment to be recreated",
    )
    kube.wait_ready("md/wine")
    assert status(kube)["stable"]["revision"] == revision
    operator.assert_no_errors()


def test_a_foreign_service_is_never_taken_over(kube: Kube, operator: OperatorProcess) -> None:
    kube.run("create", "service", "clusterip", "wine", "--tcp=80:8080")
    apply(kube, example())
    ready = wait_for(lambda: ready_condition(kube), timeout=30, what="a Ready condition")
    assert ready["reason"] == "ServiceConflict", ready
    service = kube.get("service", "wine")
    assert service is not None
    assert not service["metadata"].get("ownerReferences")
    assert kube.items("deployments") == []
    operator.assert_no_errors()


def test_a_candidate_that_cannot_start_fails_while_stable_keeps_serving(
    kube: Kube, operator: OperatorProcess
) -> None:
    apply(kube, example())
    kube.wait_ready("md/wine")
    serving = status(kube)["stable"]["revision"]
    # The namespace's quota cannot hold the candidate's pods: its ReplicaSet cannot create them.
    kube.run("create", "quota", "cpu", "--hard=requests.cpu=2")
    server = {"image": MLSERVER_IMAGE, "resources": {"requests": {"cpu": "3"}}}
    apply(kube, example({"spec.model": {"name": "wine", "version": "2"}, "spec.server": server}))
    # A replica failure is waited out for the attempt's first minute (a superseded
    # candidate's terminating pods may hold the quota), then fails the rollout.
    ready = wait_for(
        lambda: (c := ready_condition(kube)).get("reason") == "RolloutFailed" and c,
        timeout=150,
        what="Ready=False with reason RolloutFailed",
    )
    assert f"revision {serving} keeps serving" in ready["message"]
    assert "quota" in ready["message"]
    assert status(kube)["phase"] == "Failed"
    assert status(kube)["stable"]["revision"] == serving
    service = kube.get("service", "wine")
    assert service is not None
    assert service["spec"]["selector"][REVISION_LABEL] == serving
    wait_for(lambda: kube.events("RolloutFailed"), timeout=15, what="a RolloutFailed Event")

    # A fixed spec supersedes the failed candidate and is switched to.
    apply(kube, example({"spec.model": {"name": "wine", "version": "3"}}))
    wait_for(
        lambda: (
            stable(status(kube)).get("modelVersion") == "3"
            and len(kube.children()["deployments"]) == 1
        ),
        timeout=90,
        what="the switch to version 3",
    )
    kube.wait_ready("md/wine")
    outcomes = [entry["outcome"] for entry in status(kube)["history"]]
    assert outcomes == ["Promoted", "Superseded", "Deployed"]
    operator.assert_no_errors()


def test_a_change_made_while_the_operator_was_down_is_applied_on_start(
    kube: Kube, operator: OperatorProcess
) -> None:
    apply(kube, example())
    kube.wait_ready("md/wine")
    revision = status(kube)["stable"]["revision"]
    operator.stop()
    apply(kube, example({"spec.replicas": 3}))
    operator.start()
    wait_for(
        lambda: (
            stable(current := status(kube)).get("readyReplicas") == 3
            and current.get("observedGeneration") == 2
        ),
        timeout=60,
        what="the scale to 3 replicas after the restart",
    )
    assert status(kube)["stable"]["revision"] == revision
    operator.assert_no_errors()
