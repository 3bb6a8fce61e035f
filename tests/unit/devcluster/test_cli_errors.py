"""A missing prerequisite is one line on stderr and exit code 1, for make demo as for
make cluster-up: no traceback (it printed one for the demo, and for any error of the
cluster's commands but ClusterError)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vigil.devcluster import cli, demo
from vigil.devcluster.cluster import KubectlError, LocalCluster
from vigil.devcluster.engine import ImageError
from vigil.devcluster.network import NetworkError
from vigil.devcluster.node import NOT_ROOT, NodeError
from vigil.devcluster.packages import PackageError
from vigil.devcluster.seaweedfs import StoreError

FAILURES: list[BaseException] = [
    NodeError(NOT_ROOT),
    ImageError("debootstrap failed: see ~/.cache/vigil/images/logs/python-base.log"),
    NetworkError("cannot create the node's network namespace: `ip netns add` said no"),
    PackageError("apt-get install containerd failed: E: Unable to locate package"),
    subprocess.CalledProcessError(
        100, ["apt-get", "install", "-y", "runc"], stderr="E: Unable to locate package runc\n"
    ),
    KubectlError(1, ["kubectl", "get", "md"], "", "kubectl get md failed: Unauthorized"),
    StoreError("weed server did not answer within 120s; see its log /tmp/weed.log"),
]


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CLUSTER_DIR", str(tmp_path / "cluster"))
    monkeypatch.setattr(demo, "_state_dir", lambda: tmp_path / "demo")


def _raise(error: BaseException) -> object:
    def raising(*args: object, **kwargs: object) -> None:
        raise error

    return raising


def _one_line_said(capsys: pytest.CaptureFixture[str], prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"{prog}: "), err
    return err


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
def test_make_demo_says_what_is_missing_in_a_line(
    error: BaseException, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo.Demo, "play", _raise(error))
    assert cli.main(["demo", "up"]) == 1
    said = _one_line_said(capsys, "vigil-devcluster demo")
    if isinstance(error, subprocess.CalledProcessError):
        assert "failed with exit code" in said and str(error.stderr).strip() in said
    else:
        assert str(error) in said


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("command", ["up", "down"])
def test_make_cluster_up_and_down_say_what_is_missing_in_a_line(
    command: str,
    error: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(LocalCluster, command, _raise(error))
    assert cli.main([command]) == 1
    said = _one_line_said(capsys, "vigil-devcluster")
    assert said.count("\n") <= 2 + str(error).count("\n")


def test_a_failed_command_is_named_with_what_it_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(LocalCluster, "up", _raise(FAILURES[4]))
    assert cli.main(["up"]) == 1
    assert capsys.readouterr().err == (
        "vigil-devcluster: `apt-get install -y runc` failed with exit code 100:\n"
        "E: Unable to locate package runc\n"
    )


def test_make_demo_down_reports_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(LocalCluster, "down", _raise(FAILURES[2]))
    assert cli.main(["demo", "down"]) == 1
    assert "cannot create the node's network namespace" in _one_line_said(
        capsys, "vigil-devcluster demo"
    )
