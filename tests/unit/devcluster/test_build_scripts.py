"""The build scripts under hack/, run with a stand-in ``go`` (it writes each binary in two
steps with a pause between) and a cache folder of the test's own.

Two runs at once (make demo's builds beside another checkout's make builds) wrote one
fixed temporary name and renamed it: one could cache the other's half-written binary,
and the second rename failed. The control plane's folder was keyed by versions alone.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flock_queue import queued_behind

ROOT = Path(__file__).resolve().parents[3]
HACK = ROOT / "hack"
WHOLE = "begin\nend\n"
#: The control plane's modules (hack/build-cluster.sh's groups).
MODULES = ("etcd", "flux/controllers", "k8s", "coredns", "prometheus")
CONTROL_PLANE = (
    "etcd",
    "kwok",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "coredns",
    "prometheus",
    "promtool",
)

STUB_GO = """\
#!{python}
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["STUB_GO_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[0] == "build":
    out = args[args.index("-o") + 1]
    packages = args[args.index("-o") + 2 :]
    if out.endswith("/"):
        targets = [Path(out) / package.rsplit("/", 1)[-1] for package in packages]
    else:
        targets = [Path(out)]
    handles = [open(target, "w") for target in targets]
    for handle in handles:
        handle.write("begin\\n")
        handle.flush()
    release = os.environ.get("STUB_GO_RELEASE")  # held mid-build until the test makes it
    while release and not os.path.exists(release):
        time.sleep(0.01)
    for handle, target in zip(handles, targets):
        handle.write("end\\n")
        handle.close()
        target.chmod(0o755)
elif args[:2] == ["list", "-m"]:
    print(os.environ["STUB_GO_MODDIR"])
elif args[:2] == ["mod", "download"]:
    print(json.dumps({{"Path": args[-1], "Dir": os.environ["STUB_GO_MODDIR"]}}, indent="\\t"))
else:
    sys.exit(f"stub go: {{args}}")
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """PATH with the stand-in go first, the cache in the test's folder."""
    stub = tmp_path / "stub-bin"
    stub.mkdir()
    (stub / "go").write_text(STUB_GO.format(python=sys.executable))
    (stub / "go").chmod(0o755)
    module = tmp_path / "module"  # what `go list -m` / `go mod download` point at
    for path in (
        "manifests/crds/application-crd.yaml",
        "manifests/crds/appproject-crd.yaml",
        "hack/git-verify-wrapper.sh",
        "hack/gpg-wrapper.sh",
        "config/crd/bases/gitrepositories.yaml",
    ):
        (module / path).parent.mkdir(parents=True, exist_ok=True)
        (module / path).write_text("kind: Thing\n")
    return {
        **os.environ,
        "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}",
        "VIGIL_CACHE_DIR": str(tmp_path / "cache"),
        "STUB_GO_LOG": str(tmp_path / "go.log"),
        "STUB_GO_MODDIR": str(module),
        "STUB_GO_RELEASE": "",
    }


def _go_builds(env: dict[str, str]) -> list[str]:
    log = Path(env["STUB_GO_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith("build")]


def _start(script: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _hold_builds(env: dict[str, str]) -> Path:
    """Each go build waits mid-way (its binaries half written) until the returned path exists."""
    release = Path(env["STUB_GO_LOG"]).with_name("release")
    env["STUB_GO_RELEASE"] = str(release)
    return release


def _second_run_queued(env: dict[str, str], second: subprocess.Popen[str]) -> bool:
    """Whether ``second`` waits on a build lock, the first run's build being held."""
    locks = list(Path(env["VIGIL_CACHE_DIR"], "locks").glob("*.lock"))
    return queued_behind(locks, lambda: second.poll() is not None or len(_go_builds(env)) > 1)


def _finish(run: subprocess.Popen[str]) -> str:
    out, err = run.communicate(timeout=40)
    assert run.returncode == 0, f"{run.args} failed:\n{err}"
    return out.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "binaries"),
    [
        ("build-seaweedfs.sh", [""]),
        ("build-helm.sh", [""]),
        ("build-argocd.sh", ["argocd"]),
        ("build-flux.sh", ["source-controller", "kustomize-controller"]),
    ],
)
def test_two_builds_at_once_cache_one_whole_binary(
    script: str, binaries: list[str], env: dict[str, str]
) -> None:
    release = _hold_builds(env)
    first = _start(HACK / script, env)
    deadline = time.monotonic() + 20
    while not _go_builds(env):  # the first is compiling
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    second = _start(HACK / script, env)
    _second_run_queued(env, second)  # (or it built again: counted below)
    release.touch()
    printed = {_finish(first), _finish(second)}
    assert len(printed) == 1
    (where,) = printed
    for name in binaries:
        assert Path(where, name).read_text() == WHOLE
    assert len(_go_builds(env)) == 1, "the second run built again instead of waiting"
    leftovers = [p.name for p in Path(where).parent.rglob("*") if ".build-" in p.name]
    assert leftovers == [] and not list(Path(where).parent.rglob("*.tmp"))


@pytest.mark.slow
def test_flux_keeps_another_runs_scratch_folder_until_it_holds_the_entry(
    env: dict[str, str],
) -> None:
    """It removed .tmp before waiting for the module's lock: under a build using it."""
    folder = Path(_finish(_start(HACK / "build-flux.sh", env, "--print")))
    (folder / ".tmp").mkdir(parents=True)
    marker = folder / ".tmp" / "in-use"
    marker.write_text("")
    entry_lock = Path(env["VIGIL_CACHE_DIR"]) / "locks" / f"{folder.name}.lock"
    entry_lock.parent.mkdir(parents=True, exist_ok=True)
    with entry_lock.open("a") as another_build:
        fcntl.flock(another_build, fcntl.LOCK_EX)
        run = _start(HACK / "build-flux.sh", env)
        assert queued_behind([entry_lock], lambda: run.poll() is not None)
        assert marker.exists(), "the scratch folder went while another build held the entry"
    _finish(run)
    assert not (folder / ".tmp").exists()


def _control_plane_copy(tmp_path: Path) -> Path:
    """hack/build-cluster.sh and its modules' inputs, in a folder of the test's own."""
    hack = tmp_path / "hack"
    hack.mkdir()
    shutil.copy(HACK / "build-cluster.sh", hack)
    for module in MODULES:
        (hack / module).mkdir(parents=True)
        for file in (HACK / module).iterdir():
            if file.name in ("go.mod", "go.sum") or file.suffix == ".go":
                shutil.copy(file, hack / module)
    return hack / "build-cluster.sh"


def _printed(script: Path, env: dict[str, str]) -> str:
    return _finish(_start(script, env, "--print"))


@pytest.mark.slow
def test_the_control_plane_folder_follows_every_input(tmp_path: Path, env: dict[str, str]) -> None:
    script = _control_plane_copy(tmp_path)
    hack = script.parent
    first = _printed(script, env)
    assert Path(first).parent == Path(env["VIGIL_CACHE_DIR"]) / "bin"
    assert Path(first).name.startswith("k8s-v1.34.4-etcd-v3.6.10-kwok-v0.8.0-prometheus-3.16.0-")

    def changed(path: Path, edit: str) -> str:
        before = path.read_text()
        path.write_text(before.replace(edit, edit + " ") if edit else before + "// edit\n")
        try:
            return _printed(script, env)
        finally:
            path.write_text(before)

    assert changed(hack / "coredns" / "main.go", "") != first  # CoreDNS's plugin list
    assert changed(hack / "k8s" / "go.mod", "") != first
    assert changed(hack / "flux" / "controllers" / "go.sum", "") != first  # kwok's module
    assert changed(hack / "prometheus" / "tools.go", "") != first
    assert changed(script, "remove_all_sd,enable_kubernetes_sd") != first  # build tags
    assert changed(script, "gitTreeState=clean") != first  # ldflags
    assert _printed(script, env) == first
    with script.open("a") as handle:
        handle.write("# a comment rebuilds nothing\n")
    assert _printed(script, env) == first


#: The other build scripts: (script, its module under hack/, how its folder's name begins).
SINGLE_MODULE_BUILDS = [
    ("build-seaweedfs.sh", "seaweedfs", "seaweedfs-v0.0.0-"),  # and the commit's date and hash
    ("build-helm.sh", "helm", "helm-v3.19.5-k8s1.34-"),
    ("build-flux.sh", "flux/controllers", "flux-source-v1.9.0-kustomize-v1.9.6-"),
    ("build-argocd.sh", "argocd/argocd", "argocd-v3.6.1-"),
]


def _script_copy(folder: Path, script: str, module: str) -> Path:
    """One build script and its module's inputs, in a folder of the test's own."""
    hack = folder / "hack"
    (hack / module).mkdir(parents=True)
    shutil.copy(HACK / script, hack)
    for file in (HACK / module).iterdir():
        if file.name in ("go.mod", "go.sum") or file.suffix == ".go":
            shutil.copy(file, hack / module)
    return hack / script


def _entry(script: Path, env: dict[str, str]) -> str:
    """The cache folder's name (seaweedfs and helm print their binary's path)."""
    printed = Path(_printed(script, env))
    return printed.name if printed.parent.name == "bin" else printed.parent.name


@pytest.mark.parametrize(("script", "module", "name"), SINGLE_MODULE_BUILDS)
def test_a_binarys_folder_follows_its_go_sum_and_its_scripts_commands(
    script: str, module: str, name: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """They were keyed by versions or go.mod alone: a changed go.sum (or replace directive,
    or flag) reused the binary built from the old one."""
    copy = _script_copy(tmp_path / "a", script, module)
    first = _entry(copy, env)
    assert re.fullmatch(rf"{re.escape(name)}(\S+-)?[0-9a-f]{{12}}", first), first
    # The same inputs elsewhere (another checkout) share the folder.
    assert _entry(_script_copy(tmp_path / "b", script, module), env) == first
    go_sum = copy.parent / module / "go.sum"
    before = go_sum.read_text()
    go_sum.write_text(before + "example.com/m v1.0.0 h1:AAAA=\n")
    assert _entry(copy, env) != first
    go_sum.write_text(before)
    assert _entry(copy, env) == first
    commands = copy.read_text()
    copy.write_text(commands.replace("-trimpath", "-trimpath -v", 1))
    assert _entry(copy, env) != first
    copy.write_text(commands + "# a comment rebuilds nothing\n")
    assert _entry(copy, env) == first


def test_python_agrees_with_the_script_on_the_folder() -> None:
    from vigil.devcluster.cluster import printed_bin_dir

    printed = subprocess.run(
        ["bash", str(HACK / "build-cluster.sh"), "--print"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed_bin_dir(ROOT) == Path(printed)


@pytest.mark.slow
def test_the_control_plane_builds_each_module_once_and_clears_killed_builds(
    tmp_path: Path, env: dict[str, str]
) -> None:
    script = _control_plane_copy(tmp_path)
    bindir = Path(_printed(script, env))
    stale = bindir / ".build-k8s-k1ll3d"
    stale.mkdir(parents=True)
    (stale / "kube-apiserver").write_text("begin\n")
    release = _hold_builds(env)
    first = _start(script, env)
    deadline = time.monotonic() + 20
    while not _go_builds(env):  # the first is compiling
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    second = _start(script, env)
    _second_run_queued(env, second)  # (or it built again: counted below)
    release.touch()
    for run in (first, second):
        _, err = run.communicate(timeout=40)
        assert run.returncode == 0, err
    for name in CONTROL_PLANE:
        assert (bindir / name).read_text() == WHOLE, name
    assert len(_go_builds(env)) == len(MODULES), "a module was built twice"
    assert [p.name for p in bindir.iterdir() if p.name.startswith(".")] == []


def test_the_control_plane_refuses_a_module_pinning_another_version(
    tmp_path: Path, env: dict[str, str]
) -> None:
    script = _control_plane_copy(tmp_path)
    go_mod = script.parent / "prometheus" / "go.mod"
    go_mod.write_text(
        go_mod.read_text().replace(
            "github.com/prometheus/prometheus v0.316.0", "github.com/prometheus/prometheus v0.315.0"
        )
    )
    run = _start(script, env)
    _, err = run.communicate(timeout=40)
    assert run.returncode == 1
    assert "hack/prometheus/go.mod does not require github.com/prometheus/prometheus v0.316" in err
    assert _go_builds(env) == []
