"""The ``manifests/gitops/flux`` example in a test's Git repository, and Flux's view of it.

The repository holds the project's ``manifests/`` and ``crds/`` as a user's
fork does, the example's GitRepository pointed at it; a test applies the
example's GitRepository and model Kustomization (``example_objects``) and
commits its model into ``MODEL_PATH``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit.gitserver import GitRepository, git_server
from kit.kube import ROOT, Kube
from kit.modeldeployment import ModelStore
from kit.traffic import LiveTraffic, ModelEndpoint
from kit.waits import wait_for
from vigil.common import kube_yaml
from vigil.common.times import parse_unix
from vigil.devcluster.models import TrainedModel

#: The example's folder, in the project and in the test's repository.
EXAMPLE = "manifests/gitops/flux"
#: Where the test's model lives in the repository (the example's model Kustomization's path).
MODEL_PATH = "manifests/models/wine"
#: How often source-controller looks at the repository (the example: 5m).
SOURCE_INTERVAL = "2s"


@dataclass(frozen=True)
class FluxTiming:
    """A model Kustomization's intervals and health-check timeout (Flux durations)."""

    interval: str
    retry_interval: str
    timeout: str


#: The example's Kustomization as the first scenario runs it: one health check waits
#: for the whole of a model's start.
PATIENT = FluxTiming(interval="10m", retry_interval="10m", timeout="5m")


@dataclass
class GitOps:
    """The test's repository and the Flux objects that follow it."""

    repository: GitRepository
    kube: Kube
    #: The model Kustomization's name (the example's).
    name: str

    def kustomization(self) -> dict[str, Any]:
        return self.kube.get("kustomization.kustomize.toolkit.fluxcd.io", self.name) or {}

    def wait_ready_at(self, commit: str, timeout: float) -> None:
        """Until Flux says the Kustomization is Ready at ``commit``."""
        wait_for(
            lambda: ready_at(self.kustomization(), commit),
            timeout=timeout,
            what=lambda: f"Flux Ready for {commit}: {self.kustomization().get('status')}",
        )

    def source(self) -> dict[str, Any]:
        return self.kube.get("gitrepository.source.toolkit.fluxcd.io", "vigil") or {}


def seed_repository(folder: Path, url: str) -> Path:
    """The project's manifests and CRDs as a fork holds them; the example's GitRepository
    names ``url`` (the example says: replace url with your fork's). The model's folder
    is not there yet: a test commits it."""
    for part in ("manifests", "crds"):
        shutil.copytree(ROOT / part, folder / part)
    path = folder / EXAMPLE / "gitrepository.yaml"
    text, edits = re.subn(r"(?m)^(\s+url:) \S+$", rf"\1 {url}", path.read_text())
    assert edits == 1, f"no single url in {path}"
    path.write_text(text)
    return folder


@contextmanager
def seeded_fork(folder: Path) -> Iterator[GitRepository]:
    """A Git server on 127.0.0.1 (under ``folder``) holding one repository, ``vigil``,
    seeded as a user's fork (``seed_repository``); stopped afterwards."""
    with git_server(folder / "git") as server:
        seed = seed_repository(folder / "seed", f"http://127.0.0.1:{server.port}/vigil.git")
        yield server.repository("vigil", seed=seed)


def example_objects(
    repository: Path, namespace: str, timing: FluxTiming = PATIENT
) -> list[dict[str, Any]]:
    """The example's GitRepository and model Kustomization from the repository's copy,
    with what a test changes: its namespace for both and for the model, a short source
    interval, the model's path, no dependency on the operator's Kustomization (the
    operator runs as a process of the ``operator`` fixture) and ``timing``."""
    example = repository / EXAMPLE
    source = yaml.safe_load((example / "gitrepository.yaml").read_text())
    kustomizations = list(yaml.safe_load_all((example / "kustomizations.yaml").read_text()))
    (model,) = [k for k in kustomizations if k["metadata"]["name"] != "vigil-operator"]
    source["metadata"]["namespace"] = namespace
    source["spec"]["interval"] = SOURCE_INTERVAL
    model["metadata"]["namespace"] = namespace
    spec = model["spec"]
    spec.pop("dependsOn", None)
    spec["path"] = f"./{MODEL_PATH}"
    spec["targetNamespace"] = namespace
    spec["interval"] = timing.interval
    spec["retryInterval"] = timing.retry_interval
    spec["timeout"] = timing.timeout
    for check in spec["healthChecks"]:
        check["namespace"] = namespace
    return [source, model]


def ready_at(kustomization: dict[str, Any], commit: str) -> bool:
    """Ready True, having applied ``commit``."""
    status = kustomization.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return bool(
        ready
        and ready[0]["status"] == "True"
        and str(status.get("lastAppliedRevision", "")).endswith(commit)
    )


def attempted(kustomization: dict[str, Any], commit: str) -> bool:
    """Flux tried to apply ``commit`` (whatever came of it)."""
    status = kustomization.get("status") or {}
    return str(status.get("lastAttemptedRevision", "")).endswith(commit)


def waiting_for_the_model(kustomization: dict[str, Any], commit: str) -> bool:
    """Flux tried ``commit`` and found no model's folder in it (not Ready: path not found)."""
    status = kustomization.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    reconciling = [c for c in status.get("conditions") or [] if c["type"] == "Reconciling"]
    tried = attempted(kustomization, commit) or any(commit in c["message"] for c in reconciling)
    return bool(
        tried and ready and ready[0]["status"] == "False" and "not found" in ready[0]["message"]
    )


def model_files(
    store: ModelStore,
    model: TrainedModel,
    steps: list[dict[str, Any]] | None = None,
    **options: Any,
) -> dict[str, str]:
    """``model``'s folder as a user commits it (the ``manifests/examples/new-model`` layout):
    the ModelDeployment (``store.manifest``: ``steps``, ``options``), its reference
    profile, and a kustomization generating the profile's ConfigMap."""
    document = store.manifest(model, steps, **options)
    reference = document["spec"]["monitoring"]["reference"]["configMapKeyRef"]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["modeldeployment.yaml"],
        "configMapGenerator": [
            {
                "name": reference["name"],
                "files": [reference["key"]],
                "options": {
                    "disableNameSuffixHash": True,
                    "labels": {"vigil.dev/reference-profile": "true"},
                },
            }
        ],
    }
    return {
        f"{MODEL_PATH}/kustomization.yaml": kube_yaml.dump(kustomization, sort_keys=False),
        f"{MODEL_PATH}/modeldeployment.yaml": kube_yaml.dump(document, sort_keys=False),
        f"{MODEL_PATH}/{reference['key']}": model.profile_json(),
    }


def plain_model_files(
    store: ModelStore,
    model: TrainedModel,
    steps: list[dict[str, Any]] | None = None,
    **options: Any,
) -> dict[str, str]:
    """``model``'s folder as plain YAML (a directory Argo CD applies as it is, no
    kustomize): the ModelDeployment and its reference profile's ConfigMap."""
    document = store.manifest(model, steps, **options)
    reference = document["spec"]["monitoring"]["reference"]["configMapKeyRef"]
    profile = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": reference["name"],
            "labels": {"vigil.dev/reference-profile": "true"},
        },
        "data": {reference["key"]: model.profile_json()},
    }
    return {
        f"{MODEL_PATH}/modeldeployment.yaml": kube_yaml.dump(document, sort_keys=False),
        f"{MODEL_PATH}/reference.yaml": kube_yaml.dump(profile, sort_keys=False),
    }


@dataclass(frozen=True)
class FluxApply:
    """One server-side apply pass of a Kustomization, from kustomize-controller's log."""

    #: Unix seconds (the log line's time).
    at: float
    revision: str
    #: Object ("ModelDeployment/<namespace>/wine") -> action (created, configured, unchanged).
    actions: dict[str, str]

    def changed(self) -> dict[str, str]:
        """The objects this pass wrote: Flux's drift correction or a new commit's changes."""
        return {name: action for name, action in self.actions.items() if action != "unchanged"}


def flux_applies(log: str, namespace: str, name: str) -> list[FluxApply]:
    """Every apply pass kustomize-controller logged for Kustomization ``namespace/name``
    ("server-side apply completed": it logs one per reconciliation that applied objects)."""
    found = []
    for line in log.splitlines():
        parts = line.split("\t")
        if len(parts) < 4 or parts[2] != "server-side apply completed":
            continue
        fields = json.loads(parts[3])
        if fields.get("Kustomization") != {"name": name, "namespace": namespace}:
            continue
        at = parse_unix(parts[0])
        assert at is not None, line
        found.append(FluxApply(at, str(fields["revision"]), dict(fields["output"])))
    return found


@contextmanager
def serving_live(kube: Kube, model: TrainedModel) -> Iterator[tuple[LiveTraffic, str]]:
    """Live traffic (15 requests/s) to ``wine`` once it serves ``model`` through its
    Service, and its stable revision; the traffic stopped on exit."""
    endpoint = ModelEndpoint(kube, "wine", model.name)
    endpoint.wait_serving(1, timeout=120)
    traffic = endpoint.traffic(model.X, rate=15.0, seed=3)
    try:
        yield traffic, str((kube.get("md", "wine") or {})["status"]["stable"]["revision"])
    finally:
        traffic.stop()
