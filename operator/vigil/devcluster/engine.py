"""Tools for building images here: Debian packages on demand and a private Docker engine.

The engine is Debian's ``dockerd`` (package ``docker.io``) started for a
build and stopped after: its own data root (layers and build cache survive
between builds), its own socket under ``/run/vigil-images``, no bridge, no
iptables rules and no IP forwarding, so it changes nothing on the host that
a local cluster's node relies on. Builds run with ``--network=none``.

Development tooling only: never shipped to clusters.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil.devcluster.common import Recorded, stop_process
from vigil.devcluster.packages import PackageError, ensure_packages, find

Log = Callable[[str], None]

# Short: dockerd's sockets must fit a unix socket path. One per data root
# (each cache has its own lock, so two caches may build at once).
ENGINE_RUN_DIR = Path("/run/vigil-images")
ENGINE_START_TIMEOUT = 90.0
# The classic builder: the engine's own (20.10), no buildx plugin needed.
CLIENT_ENV = {"DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}


class ImageError(RuntimeError):
    """An image or its tooling could not be had; the message says what and what to do."""


def run(
    command: Sequence[str],
    *,
    what: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``command``, return its output; on failure raise naming ``what`` and the output's end."""
    result = subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if log_path is not None:
        with log_path.open("a") as handle:
            handle.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        where = f"; log: {log_path}" if log_path is not None else ""
        raise ImageError(
            f"{what} failed (exit {result.returncode}{where}): " + " | ".join(lines[-5:])
        )
    return result.stdout


def stream(
    command: Sequence[str],
    *,
    what: str,
    log_path: Path,
    progress: Callable[[str], None],
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a long ``command``: every output line to ``log_path`` and to ``progress``."""
    tail: collections.deque[str] = collections.deque(maxlen=5)
    with log_path.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env} if env else None,
        )
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            tail.append(line.rstrip())
            progress(line.rstrip())
        code = process.wait()
    if code != 0:
        raise ImageError(f"{what} failed (exit {code}; log: {log_path}): " + " | ".join(tail))


def require_tool(binary: str, package: str, say: Log) -> str:
    """The path of ``binary``; installs Debian's ``package`` first when it is missing."""
    try:
        ensure_packages({binary: package}, say)
    except PackageError as error:
        raise ImageError(str(error)) from error
    found = find(binary)
    if found is None:
        raise ImageError(f"Debian's {package} is installed but {binary} is still not found")
    return found


@dataclass(frozen=True)
class Docker:
    """A docker client bound to the private engine's socket."""

    client: str
    socket: Path
    log_path: Path

    def command(self, *args: str) -> list[str]:
        return [self.client, f"--host=unix://{self.socket}", *args]

    def run(self, *args: str, what: str) -> str:
        return run(self.command(*args), what=what, log_path=self.log_path, env=CLIENT_ENV)

    def has_image(self, ref: str) -> bool:
        result = subprocess.run(
            self.command("image", "inspect", "--format={{.Id}}", ref),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def load(self, archive: Path, ref: str) -> None:
        if not self.has_image(ref):
            self.run("load", f"--input={archive}", what=f"docker load of {ref}")

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format={{.Size}}", ref, what="docker inspect"))

    def drop_other_tags(self, repository: str, keep: str) -> None:
        """Untag older builds of ``repository``; drop dangling layers a day old.

        The classic builder's cache of earlier stages is dangling images: the
        recent ones are what makes a rebuild after a source change quick.
        """
        listed = self.run(
            "images", "--format={{.Repository}}:{{.Tag}}", repository, what="docker images"
        )
        stale = [ref for ref in listed.split() if ref != keep]
        if stale:
            self.run("rmi", *stale, what=f"docker rmi of old {repository} images")
        self.run("image", "prune", "--force", "--filter=until=24h", what="docker image prune")


@contextlib.contextmanager
def docker_engine(data_root: Path, log_dir: Path, say: Log) -> Iterator[Docker]:
    """A private dockerd for the duration of the block (the caller serializes use of data_root)."""
    dockerd = require_tool("dockerd", "docker.io", say)
    # The client of the same package (another docker client may come first in PATH).
    sibling = Path(dockerd).resolve().parents[1] / "bin" / "docker"
    client = str(sibling) if sibling.is_file() else require_tool("docker", "docker.io", say)
    run_dir = ENGINE_RUN_DIR / hashlib.sha256(str(data_root).encode()).hexdigest()[:8]
    run_dir.mkdir(parents=True, exist_ok=True)
    pidfile = run_dir / "dockerd.pid"
    _stop_leftover(pidfile)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "dockerd.log"
    docker = Docker(client, run_dir / "docker.sock", log_dir / "docker-client.log")
    say(f"starting a private dockerd (data root {data_root}, log {log_path})")
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [
                dockerd,
                f"--data-root={data_root}",
                f"--exec-root={run_dir / 'exec'}",
                f"--pidfile={pidfile}",
                f"--host=unix://{docker.socket}",
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--log-level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_engine(docker, process, log_path)
        yield docker
    finally:
        # dockerd stops its containers and its containerd on SIGTERM: give it a minute.
        stop_process(process, 60)
        # dockerd leaves its bind mount of the host's network namespace behind.
        unmount_under(run_dir)


def _wait_for_engine(docker: Docker, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise ImageError(
                f"dockerd exited at start (exit {process.returncode}; log: {log_path}): "
                + " | ".join(tail)
            )
        probe = subprocess.run(
            docker.command("version", "--format={{.Server.Version}}"),
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.5)
    raise ImageError(
        f"dockerd did not answer on {docker.socket} within {ENGINE_START_TIMEOUT:.0f}s "
        f"(log: {log_path})"
    )


def _stop_leftover(pidfile: Path) -> None:
    """A dockerd left by a build that was killed: stopped if it is ours, its arguments naming
    our pidfile (the pid may be another process's by now)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    leftover = Recorded(pid, None, f"--pidfile={pidfile}")
    if not leftover.signal(signal.SIGTERM):
        return
    deadline = time.monotonic() + 60
    while leftover.running() and time.monotonic() < deadline:
        time.sleep(0.2)


def unmount_under(folder: Path) -> bool:
    """Unmount what a failed chroot step left mounted under ``folder``; True when none is left."""

    def mounted() -> list[str]:
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        prefix = f"{folder.resolve()}/"
        return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)

    for point in mounted():
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    return not mounted()
