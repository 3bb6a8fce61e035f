"""Flux's controllers for the GitOps e2e tests: one pin per controller, everywhere.

hack/build-flux.sh builds them from the wrapper modules under hack/flux; the
vendored CRDs there (the manifests' dry runs) are the same versions'.
Building and running them: tests/e2e/gitops.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "hack" / "build-flux.sh"
CONTROLLERS = {
    "source-controller": "SOURCE_CONTROLLER_VERSION",
    "kustomize-controller": "KUSTOMIZE_CONTROLLER_VERSION",
}


def pinned(variable: str) -> str:
    found = re.search(rf"^{variable}=(v1\.\d+\.\d+)$", SCRIPT.read_text(), re.M)
    assert found is not None, f"{variable} is not pinned in {SCRIPT}"
    return found.group(1)


@pytest.mark.parametrize("controller", sorted(CONTROLLERS))
def test_each_controller_is_pinned_once(controller: str) -> None:
    version = pinned(CONTROLLERS[controller])
    go_mod = (ROOT / "hack" / "flux" / controller / "go.mod").read_text()
    assert f"module vigil.dev/hack/flux/{controller}\n" in go_mod
    assert f"require github.com/fluxcd/{controller} {version}\n" in go_mod
    # Upstream's ./api replace cannot work outside its repository: the api module
    # is required at a released version instead.
    assert "=> ./" not in go_mod
    assert re.search(rf"github.com/fluxcd/{controller}/api v1\.\d+\.\d+", go_mod)
    tools = (ROOT / "hack" / "flux" / controller / "tools.go").read_text()
    assert f'import _ "github.com/fluxcd/{controller}"' in tools


def test_the_vendored_crds_are_the_built_versions() -> None:
    readme = (ROOT / "hack" / "flux" / "README.md").read_text().replace("**", "")
    for controller, variable in CONTROLLERS.items():
        assert f"{controller} {pinned(variable)}" in readme
    assert "make flux" in readme


def test_make_test_builds_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^flux:.*\n\tbash hack/build-flux.sh", makefile, re.M)
    test = re.search(r"^test: (.*) ##", makefile, re.M)
    assert test is not None and "builds" in test.group(1).split()
    builds = re.search(r"^builds:.*\n\t(.*)", makefile, re.M)
    assert builds is not None and "flux" in builds.group(1).split()
