"""Flux's controllers for the GitOps e2e tests: one pin per controller, everywhere.

hack/build-flux.sh builds both from the one wrapper module hack/flux/controllers; the
vendored CRDs there (the manifests' dry runs) are the same versions'. kwok builds from
the same module (hack/build-cluster.sh), taking turns with them on one lock.
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


WRAPPER = ROOT / "hack" / "flux" / "controllers"


@pytest.mark.parametrize("controller", sorted(CONTROLLERS))
def test_each_controller_is_pinned_once(controller: str) -> None:
    version = pinned(CONTROLLERS[controller])
    go_mod = (WRAPPER / "go.mod").read_text()
    assert "module vigil.dev/hack/flux/controllers\n" in go_mod
    assert re.search(rf"^\tgithub.com/fluxcd/{controller} {re.escape(version)}$", go_mod, re.M)
    # Upstream's ./api replace cannot work outside its repository: the api module
    # is required at a released version instead.
    assert "=> ./" not in go_mod
    assert re.search(rf"github.com/fluxcd/{controller}/api v1\.\d+\.\d+", go_mod)
    tools = (WRAPPER / "tools.go").read_text()
    assert f'_ "github.com/fluxcd/{controller}"' in tools


def test_both_are_built_by_one_go_build_and_cached_by_the_wrappers_go_mod() -> None:
    script = SCRIPT.read_text()
    assert re.search(r'go build [^)]*-o "\$dir/\.tmp/" "\$\{controllers\[@\]\}"', script)
    assert 'key=$(sha256sum "$module_dir/go.mod"' in script
    assert re.search(r'^dir=.*-\$key"$', script, re.M)


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


def test_kwok_builds_from_the_same_module_taking_turns_on_its_lock() -> None:
    cluster_script = (ROOT / "hack" / "build-cluster.sh").read_text()
    version = re.search(r"^KWOK_VERSION=(v\d+\.\d+\.\d+)$", cluster_script, re.M)
    assert version is not None
    assert re.search(
        rf"^\tsigs.k8s.io/kwok {re.escape(version.group(1))}$",
        (WRAPPER / "go.mod").read_text(),
        re.M,
    )
    assert '_ "sigs.k8s.io/kwok/cmd/kwok"' in (WRAPPER / "tools.go").read_text()
    assert '"flux/controllers|-s -w||kwok=sigs.k8s.io/kwok/cmd/kwok"' in cluster_script
    # build-cluster.sh names a module's lock by its folder, slashes as dashes.
    assert 'module_lock() { echo "$cache/locks/${1//\\//-}.lock"; }' in cluster_script
    assert 'exec 9>"$(module_lock "$dir")"' in cluster_script
    flux_script = SCRIPT.read_text()
    assert 'exec 9>"$cache/locks/flux-controllers.lock"' in flux_script
    # Each holds the lock (descriptor 9) across its go build, waiting for it if taken.
    for script in (cluster_script, flux_script):
        assert re.search(
            r"flock -n 9 \|\| \{ echo .* && flock 9; \}\n(?:.*\n)*?\s*\(?cd [^\n]*go build", script
        )
