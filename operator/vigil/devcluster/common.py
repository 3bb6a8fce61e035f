"""What the local cluster (``cluster.py``) and its real node (``node.py``) share."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from vigil.common import kube_yaml


class ClusterError(RuntimeError):
    """A component could not be built, started or reached; the message says which."""


_handed_out: set[tuple[str, int]] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, and never one this process was given before.

    Once a probe socket closes, the kernel may hand its port to the next bind
    again: a caller that takes several ports before it starts the servers
    would give two of them the same one.
    """
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _handed_out_lock:
            if (host, port) not in _handed_out:
                _handed_out.add((host, port))
                return port


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


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold a file lock for the block: one holder at a time, across processes (a cluster's
    ``up``, an image import into its node, one-time setup by parallel test workers)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
