"""Fixtures for the GitOps e2e tests: real Flux and Argo CD controllers, a Git server, the
examples.

Flux's source-controller and kustomize-controller (``hack/build-flux.sh``)
run as host processes for the whole session (``kit/flux.py`` says why); each
test gets a Git repository of its own on 127.0.0.1, seeded with the
project's ``manifests/`` and ``crds/`` as a user's fork holds them, and the
``manifests/gitops/flux`` example's GitRepository and model Kustomization,
pointed at that repository, in its namespace. Argo CD's tests (``kit/argocd.py``) get
the same repository and the ``manifests/gitops/argocd`` example's model Application.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.argocd import (
    Application,
    ArgoCD,
    ArgoGitOps,
    argocd_binaries,
    example_application,
    install_argocd,
    running_argocd,
)
from kit.figures import FIGURES_DIR
from kit.flux import FluxControllers, flux_binaries, install_flux_crds, running_flux
from kit.gitops import (
    MODEL_PATH,
    PATIENT,
    FluxTiming,
    GitOps,
    example_objects,
    seeded_fork,
    waiting_for_the_model,
)
from kit.kube import Kube
from kit.waits import wait_for

from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL))


@pytest.fixture
def kustomization_timing() -> FluxTiming:
    """The model Kustomization's intervals and timeout; a test module overrides this fixture."""
    return PATIENT


@pytest.fixture(scope="session")
def flux(cluster: ClusterClient) -> Iterator[FluxControllers]:
    """Flux's controllers of the pinned versions, their CRDs installed, for the session."""
    folder = flux_binaries()
    with cluster.setup_lock():
        install_flux_crds(cluster, folder)
    work = FIGURES_DIR / "flux"
    shutil.rmtree(work, ignore_errors=True)
    with running_flux(cluster, folder, work) as controllers:
        yield controllers


@pytest.fixture
def gitops(
    kube: Kube, flux: FluxControllers, kustomization_timing: FluxTiming, tmp_path: Path
) -> Iterator[GitOps]:
    """A Git repository on 127.0.0.1 seeded as a fork, and the example's Flux objects in
    this test's namespace, having tried the first commit (the model's folder is not in it
    yet: not Ready, path not found); the Flux objects deleted (Flux prunes what it
    applied) before the namespace goes."""
    with seeded_fork(tmp_path) as repository:
        objects = example_objects(repository.work, kube.namespace, kustomization_timing)
        state = GitOps(repository, kube, objects[1]["metadata"]["name"])
        kube.apply(*objects)
        try:
            wait_for(
                lambda: waiting_for_the_model(state.kustomization(), repository.head()),
                timeout=90,
                what=lambda: (
                    f"the first sync; Kustomization: {state.kustomization().get('status')}"
                    f"\nGitRepository: {state.source().get('status')}"
                ),
            )
            yield state
        finally:
            kube.run(
                "delete",
                f"kustomization.kustomize.toolkit.fluxcd.io/{state.name}",
                "gitrepository.source.toolkit.fluxcd.io/vigil",
                "--timeout=60s",
                check=False,
            )


@pytest.fixture(scope="module")
def argocd(cluster: ClusterClient) -> Iterator[ArgoCD]:
    """Argo CD's repo-server and application controller of the pinned version, its CRDs,
    settings (Vigil's health check) and default project installed, for the module: its
    controller caches every object of the cluster, so it stops with the tests that use it."""
    folder = argocd_binaries()
    with cluster.setup_lock():
        install_argocd(cluster, folder)
    work = FIGURES_DIR / "argocd"
    shutil.rmtree(work, ignore_errors=True)
    with running_argocd(cluster, folder, work) as components:
        yield components


@pytest.fixture
def argo_gitops(
    kube: Kube, cluster: ClusterClient, argocd: ArgoCD, tmp_path: Path
) -> Iterator[ArgoGitOps]:
    """A Git repository on 127.0.0.1 seeded as a fork, and the example's model Application
    following its model folder into this test's namespace, having looked at the first
    commit (no model folder yet); the Application deleted before the namespace goes."""
    with seeded_fork(tmp_path) as repository:
        document = example_application(repository.url, kube.namespace, MODEL_PATH)
        application = Application(cluster, kube.namespace)
        cluster.apply(kube_yaml.dump(document))
        try:
            wait_for(
                lambda: application.get().get("status", {}).get("conditions"),
                timeout=60,
                what=lambda: f"Argo CD's first look at the Application: {application.get()}",
            )
            yield ArgoGitOps(repository, application)
        finally:
            application.delete()
