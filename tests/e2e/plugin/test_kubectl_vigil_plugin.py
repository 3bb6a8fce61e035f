"""``kubectl vigil promote|abort|pause|resume|retry`` against the local cluster.

Runs the installed plugin executable through the real kubectl's plugin
mechanism, reads the annotation back, checks that the spec is untouched and
that the operator's clearing patch (test-then-remove) works on a real API
server, refusing to wipe a newer request.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from kit.operator import BIN, plugin_env, run_plugin

from vigil.devcluster import ClusterClient
from vigil.plugin.cli import FIELD_MANAGER
from vigil.plugin.requests import (
    ANNOTATION_REQUEST,
    ANNOTATION_REQUEST_ID,
    REQUEST_ANNOTATIONS,
    VERBS,
    Request,
    clear_request_patch,
    parse_request,
    read_request,
)

MODEL = """
apiVersion: vigil.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: wine
spec:
  model: {name: wine, version: "1"}
  server: {image: seldonio/mlserver:1.7.1-sklearn}
  replicas: 2
"""


@pytest.fixture(scope="module")
def crd(crd_installed: None) -> None:
    """The plugin's tests need the CRD alone."""


def annotations(cluster: ClusterClient, namespace: str) -> dict[str, str]:
    obj = cluster.get_json("modeldeployment", "wine", "-n", namespace)
    return dict(obj["metadata"].get("annotations") or {})  # type: ignore[index]


def clear(
    cluster: ClusterClient, namespace: str, read: Request, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The operator's clearing patch (test-then-remove) for the request it ``read``."""
    return cluster.kubectl(
        "patch",
        "modeldeployment",
        "wine",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(clear_request_patch(read)),
        check=check,
    )


def test_every_verb_sets_the_annotation_and_never_the_spec(cluster, namespace, crd):
    cluster.apply(MODEL, namespace=namespace)
    before = cluster.get_json("modeldeployment", "wine", "-n", namespace)
    seen_ids = set()
    for verb in VERBS:
        result = run_plugin(cluster, verb, "wine", "-n", namespace)
        assert result.returncode == 0, result.stderr
        assert f"{verb} requested" in result.stdout
        found = annotations(cluster, namespace)
        assert read_request(found) == verb
        seen_ids.add(found[ANNOTATION_REQUEST_ID])
        # As the operator does once it has answered: the next request finds none pending
        # (the last is left, for the managed fields below).
        read = parse_request(found)
        assert read is not None
        if verb != VERBS[-1]:
            clear(cluster, namespace, read)
    assert len(seen_ids) == len(VERBS)
    after = cluster.get_json("modeldeployment", "wine", "-n", namespace, "--show-managed-fields")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]  # type: ignore[index]
    # managedFields: the plugin's manager owns only the two annotations.
    entries = [
        m
        for m in after["metadata"]["managedFields"]  # type: ignore[index]
        if m["manager"] == FIELD_MANAGER
    ]
    assert entries
    for entry in entries:
        fields = entry["fieldsV1"]
        assert set(fields) == {"f:metadata"}
        assert set(fields["f:metadata"]) == {"f:annotations"}
        assert set(fields["f:metadata"]["f:annotations"]) <= {
            f"f:{key}" for key in REQUEST_ANNOTATIONS
        }


def test_vigil_entry_point_works_too(cluster, namespace, crd):
    cluster.apply(MODEL, namespace=namespace)
    result = subprocess.run(
        [str(BIN / "vigil"), "pause", "wine", "-n", namespace, "--kubeconfig", cluster.kubeconfig],
        env=plugin_env(cluster),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert read_request(annotations(cluster, namespace)) == "pause"


def test_missing_model_deployment_fails_with_kubectls_message(cluster, namespace, crd):
    result = run_plugin(cluster, "promote", "absent", "-n", namespace)
    assert result.returncode == 1
    assert "not found" in result.stderr.lower()


def test_operator_clear_patch_removes_only_the_request_it_read(cluster, namespace, crd):
    cluster.apply(MODEL, namespace=namespace)
    assert run_plugin(cluster, "promote", "wine", "-n", namespace).returncode == 0
    read = parse_request(annotations(cluster, namespace))
    assert read is not None
    # A person asks again before the operator answers: refused, the first one kept.
    refused = run_plugin(cluster, "abort", "wine", "-n", namespace)
    assert refused.returncode == 1 and "a request is still pending (promote" in refused.stderr
    assert read_request(annotations(cluster, namespace)) == "promote"
    # Answered (status.lastRequest), not yet cleared: the newer request replaces it, and
    # the operator's clear of the one it answered is refused.
    answered = {"id": read.request_id, "verb": "promote", "answer": "Taken", "message": "m"}
    cluster.kubectl(
        "patch", "modeldeployment", "wine", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"lastRequest": answered}}),
    )  # fmt: skip
    assert run_plugin(cluster, "abort", "wine", "-n", namespace).returncode == 0
    stale = clear(cluster, namespace, read, check=False)
    assert stale.returncode != 0
    assert read_request(annotations(cluster, namespace)) == "abort"
    # Clearing what is there now works, and leaves no request behind.
    current = parse_request(annotations(cluster, namespace))
    assert current is not None
    clear(cluster, namespace, current)
    left = annotations(cluster, namespace)
    assert ANNOTATION_REQUEST not in left and ANNOTATION_REQUEST_ID not in left


MISSING_REFERENCE = (
    MODEL
    + """  monitoring:
    reference:
      configMapKeyRef: {name: wine-reference, key: profile.json}
"""
)


def test_wait_reports_a_refusal_with_its_reason(cluster, namespace, operator):
    """A request placed while the operator cannot act (ReferenceNotFound) is answered."""
    cluster.apply(MISSING_REFERENCE, namespace=namespace)
    cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.conditions[?(@.type=='Ready')].reason}=ReferenceNotFound",
        "modeldeployment/wine",
        "-n",
        namespace,
        "--timeout=30s",
    )
    result = run_plugin(cluster, "promote", "wine", "-n", namespace, "--wait", "30")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert (
        "the operator refused the promote request: the operator cannot act on this spec "
        "(ReferenceNotFound): ConfigMap 'wine-reference'" in result.stderr
    ), result.stderr
    left = annotations(cluster, namespace)
    assert ANNOTATION_REQUEST not in left and ANNOTATION_REQUEST_ID not in left
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", "reason=RequestRefused"
    )
    (event,) = events["items"]
    assert event["type"] == "Warning" and "ReferenceNotFound" in event["message"]
