"""Property-based fuzzing of spec handling: whatever the API server admits never crashes.

1. Hypothesis draws specs (valid and near misses, tests/e2e/fuzz/spec_strategies.py);
   each is sent to the real API server as a server-side dry-run create. For every
   spec it admits, the stored (defaulted) spec goes through the operator's pure path:
   parse, desired objects, health settings, reconcile decide, rollout decide with
   empty observations. Only SpecError (reported as InvalidSpec) may come out.
2. A batch of drawn specs is really created in a namespace with the operator running:
   the operator process stays alive and every admitted object gets a status condition
   (InvalidSpec is fine: a condition says what is wrong).
"""

from __future__ import annotations

import datetime
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from kit.kube import Kube, fresh_namespace
from kit.operator import OperatorProcess
from kit.status import condition, status
from kit.waits import wait_for
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException
from spec_strategies import specs

from vigil.core import naming, reconcile, rollout
from vigil.core import spec as spec_module
from vigil.core.desired import (
    Owner,
    RevisionInfo,
    desired_configmap,
    desired_deployment,
    desired_service,
)
from vigil.core.spec import SpecError, parse_spec
from vigil.devcluster import ClusterClient

DRY_RUN_EXAMPLES = 300
BATCH = 30
#: Draws for the operator batch. About a fifth of drawn specs are admitted (13 of 60 in a
#: clean-clone run that then failed), so 2 x BATCH draws could miss BATCH // 2; with 8 x
#: BATCH, fewer than 15 admitted has a chance of about 1e-11. Once BATCH are created the rest
#: cost no API call.
OPERATOR_DRAWS = BATCH * 8


@pytest.fixture(scope="module")
def api(cluster: ClusterClient, vigil_installed: str) -> Iterator[client.CustomObjectsApi]:
    """A Kubernetes client with the admin kubeconfig (the CRD comes from vigil_installed)."""
    api_client = kube_config.new_client_from_config(config_file=cluster.kubeconfig)
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def _manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def _create(
    api: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any], dry_run: bool
) -> dict[str, Any] | None:
    """The stored object, or None when the API server refuses it (422/400)."""
    try:
        return dict(
            api.create_namespaced_custom_object(
                naming.GROUP,
                naming.VERSION,
                namespace,
                naming.PLURAL,
                _manifest(name, spec),
                dry_run="All" if dry_run else None,
                field_validation="Strict",
            )
        )
    except ApiException as error:
        if error.status in (400, 422):
            return None
        raise


def pure_path(stored: dict[str, Any]) -> None:
    """Everything the operator computes from a spec without the cluster; raises on a bug."""
    name = stored["metadata"]["name"]
    raw_spec = stored["spec"]
    owner = Owner(name, "fuzz", "uid-fuzz")
    try:
        spec = parse_spec(name, raw_spec)
    except SpecError:
        spec = None  # reported as InvalidSpec by decide() below
    if spec is not None:
        info = RevisionInfo("abc1234", "identity", naming.ROLE_STABLE)
        desired_deployment(owner, spec, info, sidecar_image="vigil:fuzz", replicas=spec.replicas)
        desired_configmap(owner, spec, info)
        desired_service(owner, "abc1234")
    spec_module.monitoring_settings(raw_spec)
    now = datetime.datetime.now(datetime.UTC)
    for reference_found in (True, False):
        reconcile.decide(
            reconcile.Observation(
                owner=owner,
                generation=1,
                spec=raw_spec,
                status={},
                deployments=[],
                service=None,
                configmaps=[],
                reference_found=reference_found,
                now=now,
                sidecar_image="vigil:fuzz",
            )
        )
    replicas = spec.replicas if spec is not None else 1
    for change in ("replacement", "tweak"):
        policy = spec_module.parse_policy(raw_spec.get("rollout") or {}, change)
        if not policy.steps:
            continue
        for ready in (False, True):
            observations = rollout.Observations(candidate_ready=ready, replicas=replicas)
            rollout.decide(policy, rollout.RolloutState(), observations, time.time())


@pytest.fixture(scope="module")
def dry_run_namespace(cluster: ClusterClient) -> Iterator[str]:
    with fresh_namespace(cluster, "spec-fuzz") as name:
        yield name


def test_every_spec_the_api_server_admits_goes_through_the_pure_path(
    api: client.CustomObjectsApi, dry_run_namespace: str
) -> None:
    admitted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []

    @settings(
        max_examples=DRY_RUN_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(spec=specs())
    def one(spec: dict[str, Any]) -> None:
        stored = _create(api, dry_run_namespace, "fuzz", spec, dry_run=True)
        if stored is None:
            refused.append(spec)
            return
        admitted.append(stored)
        pure_path(stored)

    one()
    # A fuzzer that only hits one side of the schema proves little.
    print(f"dry-run fuzz: {len(admitted)} admitted, {len(refused)} refused")
    assert len(admitted) >= DRY_RUN_EXAMPLES // 10, (len(admitted), len(refused))
    assert len(refused) >= DRY_RUN_EXAMPLES // 10, (len(admitted), len(refused))


def test_admitted_specs_leave_the_operator_alive_and_every_object_with_a_condition(
    api: client.CustomObjectsApi, kube: Kube, operator: OperatorProcess
) -> None:
    created: list[str] = []
    drawn: list[int] = []

    @settings(
        max_examples=OPERATOR_DRAWS,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=specs())
    def one(spec: dict[str, Any]) -> None:
        name = f"fz-{len(drawn)}"
        drawn.append(1)
        if len(created) < BATCH and _create(api, kube.namespace, name, spec, dry_run=False):
            created.append(name)

    one()
    assert len(created) >= BATCH // 2, f"only {len(created)} of {len(drawn)} admitted"
    for name in created:
        wait_for(
            lambda name=name: status(kube, name).get("conditions"),
            timeout=120,
            what=f"a status condition on {name}",
        )
    reasons = Counter(condition(status(kube, name), "Ready").get("reason") for name in created)
    print(f"operator batch: {len(created)} of {len(drawn)} admitted; Ready reasons {dict(reasons)}")
    assert operator.process is not None and operator.process.poll() is None, operator.log()
    log = operator.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-8000:]
