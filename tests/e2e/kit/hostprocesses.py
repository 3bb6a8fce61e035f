"""Controllers the GitOps tests run as host processes (Flux's, Argo CD's): start one with
its output in a log, wait until it answers, read its log and metrics."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kit.kube import ROOT
from vigil.devcluster.common import stop_process


def built(script: str, what: str, make_target: str, binaries: Sequence[str]) -> Path:
    """The folder ``hack/<script>`` builds (once) and prints last, holding ``binaries`` and
    ``crds/*.yaml``; the test fails naming the build and what is missing otherwise."""
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"cannot build {what} (hack/{script}, `make {make_target}`): {result.stderr[-2000:]}",
            pytrace=False,
        )
    folder = Path(result.stdout.strip().splitlines()[-1])
    missing = [name for name in binaries if not (folder / name).is_file()]
    if missing or not sorted(folder.glob("crds/*.yaml")):
        pytest.fail(f"{what}'s build in {folder} lacks {missing or 'its CRDs'}", pytrace=False)
    return folder


@dataclass
class HostControllers:
    """Running controllers by name: their logs and metrics endpoints."""

    logs: dict[str, Path]
    metrics: dict[str, str]

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def metrics_text(self, name: str) -> str:
        with urllib.request.urlopen(self.metrics[name], timeout=5) as response:
            return str(response.read().decode())


def start_logged(
    stack: ExitStack,
    command: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own, its output in ``log``; stopped (SIGTERM, then
    SIGKILL after 15 s) when ``stack`` closes."""
    out: Any = stack.enter_context(log.open("wb"))
    process = subprocess.Popen(
        list(command),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    stack.callback(stop_process, process, 15)
    return process


def wait_answering(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers 200; the test fails with the log's tail if ``process`` exits
    or 60 s pass first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"{name} exited ({process.returncode}) at start:\n"
                f"{log.read_text(errors='replace')[-3000:]}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    pytest.fail(f"{name} not answering {url} after 60s:\n{log.read_text()[-3000:]}")
