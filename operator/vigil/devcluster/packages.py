"""Debian packages the real node needs, installed when missing (``apt-get``).

containerd, runc, the CNI plugins, iptables (kube-proxy) and conntrack come
from the distribution, as on any node. A machine without them gets them on
the first ``up``; one where they cannot be installed gets an error naming
the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

#: What the node runs (a command, or a file by absolute path) -> its Debian package.
NODE_PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/lib/cni/host-local": "containernetworking-plugins",
    "/usr/lib/cni/loopback": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
    "sysctl": "procps",  # the node's namespace's forwarding and bridge settings (network.py)
}

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class PackageError(RuntimeError):
    """A package is missing and could not be installed; the message names it."""


def find(what: str) -> str | None:
    """The path of a command (PATH and the sbin folders) or of an absolute file."""
    if what.startswith("/"):
        return what if Path(what).exists() else None
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SBIN)
    return shutil.which(what, path=path)


def missing(wanted: Mapping[str, str]) -> list[str]:
    """The packages (in order, once each) whose command or file is not there."""
    packages: list[str] = []
    for what, package in wanted.items():
        if find(what) is None and package not in packages:
            packages.append(package)
    return packages


def ensure_packages(wanted: Mapping[str, str], log: Callable[[str], None] = print) -> None:
    """Install the Debian packages of whatever in ``wanted`` is missing."""
    packages = missing(wanted)
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise PackageError(
            f"missing: {', '.join(packages)} (no apt-get here to install them): "
            "install these packages and retry"
        )
    log(f"devcluster: installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ("-o", "DPkg::Lock::Timeout=300")
    update = subprocess.run(
        ["apt-get", *lock, "update", "-qq"], capture_output=True, text=True, env=env
    )
    install = subprocess.run(
        ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *packages],
        capture_output=True,
        text=True,
        env=env,
    )
    still = missing(wanted)
    if install.returncode != 0 or still:
        said = (install.stderr or update.stderr).strip().splitlines()
        raise PackageError(
            f"cannot install the Debian package(s) {', '.join(still or packages)}"
            f" (apt-get: {said[-1] if said else install.returncode}); "
            f"install them by hand (apt-get install {' '.join(still or packages)}) and retry"
        )
