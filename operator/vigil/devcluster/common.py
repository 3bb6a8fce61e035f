"""What the local cluster (``cluster.py``) and its real node (``node.py``) share."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vigil.common import kube_yaml


class ClusterError(RuntimeError):
    """A component could not be built, started or reached; the message says which."""


#: Ports handed out come from a block of their own per pytest-xdist worker (the main
#: process's block without one), between the kubelet's (10248-10259) and the local
#: clusters' port bases (26400 and up), below the kernel's ephemeral range (32768-60999
#: here): two processes each probing bind(0) were handed the same port whenever one's probe
#: closed before the other's, and the later server failed to start.
FIRST_PORT = 11000
PORT_BLOCK = 1000
PORT_BLOCKS = 9

_next_port: dict[str, int] = {}
_next_port_lock = threading.Lock()


def _port_block() -> range:
    """This process's block: the main process's, or its pytest-xdist worker's (gwN)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    number = worker[2:] if worker.startswith("gw") else ""
    index = (int(number) + 1) % PORT_BLOCKS if number.isdigit() else 0
    start = FIRST_PORT + index * PORT_BLOCK
    return range(start, start + PORT_BLOCK)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, from this process's block, in turn: not one handed out
    in the block's last thousand (a caller that takes several ports before it starts the
    servers gets different ones)."""
    block = _port_block()
    for _ in range(len(block)):
        with _next_port_lock:
            # A random start: two test sessions at once (each its own gw0) rarely meet.
            offset = _next_port.get(host, random.randrange(len(block)))
            _next_port[host] = (offset + 1) % len(block)
        port = block[offset]
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # in use: the next one
        return port
    raise ClusterError(f"no free port on {host} in {block.start}-{block.stop - 1}")


def stop_process(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, SIGKILL once ``grace`` seconds have passed; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def pid_alive(pid: int) -> bool:
    """Whether a process has this pid now (any process: see :class:`Recorded` for ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); look at its state.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def process_identity(pid: int) -> str | None:
    """``<boot id>:<start time>`` of the process with this pid now; None if there is none.

    A pid is reused (after a reboot, or once the numbers wrap); its start time
    (``/proc/<pid>/stat`` field 22, clock ticks after boot) within one boot is not:
    the pid and its identity name one process for good.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return f"{_boot_id()}:{fields[19]}"


def command_line(pid: int) -> str:
    """The process's arguments joined by spaces ("" once it is gone or a zombie)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def names_folder(cmdline: str, folder: str) -> bool:
    """Whether a command line names ``folder`` or a path inside it: not a folder whose
    name merely starts the same (``.vigil/cluster-ci`` beside ``.vigil/cluster``)."""
    return re.search(re.escape(folder) + r"(?![\w.-])", cmdline) is not None


@dataclass(frozen=True)
class Recorded:
    """A process a state file (``state.json``) names: its pid and identity.

    ``identity`` is None in a state file written before identities were kept: the
    process is then taken as ours only if its command line names ``marker`` (the
    state folder, which every process a cluster or a demo starts has in its
    arguments). Anything else with that pid (after a reboot) is left alone.
    """

    pid: int
    identity: str | None
    marker: str

    @classmethod
    def now(cls, pid: int, marker: str) -> Recorded:
        """The process with this pid now (just started, or just found by a scan)."""
        return cls(pid, process_identity(pid), marker)

    def is_ours(self) -> bool:
        """Whether the pid still belongs to the recorded process (a zombie of it included)."""
        if self.identity is not None:
            return process_identity(self.pid) == self.identity
        return bool(self.marker) and names_folder(command_line(self.pid), self.marker)

    def running(self) -> bool:
        """Ours, and not yet exited."""
        return pid_alive(self.pid) and self.is_ours()

    def signal(self, signum: int, group: bool = False) -> bool:
        """Send ``signum`` (to its process group with ``group``) if it is still ours; whether
        it was sent. Never to whatever process has taken the pid over."""
        handle = None
        if not group:
            # A pidfd pins the process: checked after opening, a signal cannot reach a
            # process that took the pid over in between. (Kernels before 5.3: plain kill.)
            try:
                handle = os.pidfd_open(self.pid)
            except ProcessLookupError:
                return False
            except (OSError, AttributeError):
                handle = None
        if handle is not None:
            try:
                if not self.is_ours():
                    return False
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(handle, signum)
                return True
            finally:
                os.close(handle)
        if not self.is_ours():
            return False
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if group else os.kill)(self.pid, signum)
        return True


def write_kubeconfig(
    path: Path,
    server: str,
    ca_data: str,
    token: str,
    user: str,
    client_certificate: tuple[Path, Path] | None = None,
) -> None:
    """Write a kubeconfig with one cluster, one user (a token, or a client certificate
    and key) and one context."""
    credentials: dict[str, str] = {"token": token}
    if client_certificate is not None:
        cert, key = client_certificate
        credentials = {"client-certificate": str(cert), "client-key": str(key)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "vigil", "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "vigil", "context": {"cluster": "vigil", "user": user}}],
        "current-context": "vigil",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a process reading the previous one (parallel test
    # workers share a ServiceAccount's kubeconfig) never sees half a file.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    # Created owner-only: the token is never readable by others, not even for a moment.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(kube_yaml.dump(config, sort_keys=False))
        partial.chmod(0o600)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


class _HeldLock:
    """One lock file's flock in this process, and how deeply the holding thread nests."""

    def __init__(self) -> None:
        self.threads = threading.RLock()
        self.depth = 0
        self.handle: IO[str] | None = None


_held_locks: dict[str, _HeldLock] = {}
_held_locks_guard = threading.Lock()


@contextlib.contextmanager
def exclusive(lock_path: Path, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold a file lock for the block: one holder at a time, across processes (a cluster's
    ``up`` and ``down``, an image import into its node, one-time setup by parallel test
    workers).

    Reentrant within a thread (``up`` runs ``down`` holding its cluster's lock): a
    second flock of the same file from this process would wait for itself forever.
    ``waiting`` is told once if another process holds it. The file is never removed:
    a process that opened it before a removal would lock a file no one else sees.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _held_locks_guard:
        held = _held_locks.setdefault(os.path.abspath(lock_path), _HeldLock())
    with held.threads:
        if held.depth == 0:
            handle = lock_path.open("a")
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if waiting is not None:
                        waiting(f"waiting for another process holding {lock_path}")
                    fcntl.flock(handle, fcntl.LOCK_EX)
            except BaseException:
                handle.close()
                raise
            held.handle = handle
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.handle is not None:
                fcntl.flock(held.handle, fcntl.LOCK_UN)
                held.handle.close()
                held.handle = None
