"""Argo CD for the GitOps e2e tests: one pin, everywhere.

hack/build-argocd.sh builds it from the wrapper module hack/argocd/argocd; the
vendored Application CRD there (the manifests' dry runs) is the same version's.
Building and running it: tests/e2e/gitops/test_argocd_e2e.py.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "hack" / "build-argocd.sh"
WRAPPER = ROOT / "hack" / "argocd" / "argocd"


def pinned() -> str:
    found = re.search(r"^ARGOCD_VERSION=(v3\.\d+\.\d+)$", SCRIPT.read_text(), re.M)
    assert found is not None, f"ARGOCD_VERSION is not pinned in {SCRIPT}"
    return found.group(1)


def test_the_wrapper_builds_the_pinned_version_with_upstreams_engine() -> None:
    version = pinned()
    go_mod = (WRAPPER / "go.mod").read_text()
    assert "module vigil.dev/hack/argocd/argocd\n" in go_mod
    assert f"require github.com/argoproj/argo-cd/v3 {version}\n" in go_mod
    # Upstream's ./gitops-engine replace cannot work outside its repository: the
    # engine module is required at the same released version instead.
    assert "=> ./" not in go_mod
    assert f"github.com/argoproj/argo-cd/gitops-engine/v3 {version}" in go_mod


def test_the_build_links_only_the_components_the_tests_run() -> None:
    main = (WRAPPER / "main.go").read_text()
    imported = set(re.findall(r'"github.com/argoproj/argo-cd/v3/cmd/([\w-]+)/commands"', main))
    assert imported == {
        "argocd-application-controller",
        "argocd-repo-server",
        "argocd-git-ask-pass",
    }
    # The kit starts these names (ARGOCD_BINARY_NAME).
    kit = (ROOT / "tests" / "e2e" / "kit" / "argocd.py").read_text()
    for component in ("argocd-application-controller", "argocd-repo-server"):
        assert f'"{component}"' in kit
    assert re.search(r'-o "\$tmp/argocd" \.\)', SCRIPT.read_text())


def test_the_build_uses_the_toolchain_its_go_mod_asks_for() -> None:
    asked = re.search(r"^go (1\.\d+)", (WRAPPER / "go.mod").read_text(), re.M)
    exported = re.search(r"^export GOTOOLCHAIN=go(1\.\d+)\.\d+$", SCRIPT.read_text(), re.M)
    assert asked is not None and exported is not None
    assert asked.group(1) == exported.group(1)


def test_the_vendored_crd_is_the_built_version() -> None:
    readme = (ROOT / "hack" / "argocd" / "README.md").read_text().replace("**", "")
    assert f"Argo CD {pinned()}" in readme
    assert f"argo-cd/v3@{pinned()}" in readme
    assert "make argocd" in readme


def test_make_test_builds_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^argocd:.*\n\tbash hack/build-argocd.sh", makefile, re.M)
    builds = re.search(r"^builds:.*\n\t(.*)", makefile, re.M)
    assert builds is not None and "argocd" in builds.group(1).split()
