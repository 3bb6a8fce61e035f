"""Small images the real node needs, built here with no registry: pause, and busybox.

No registry is reachable, so images are written as docker archives (one
layer) and imported into the node's containerd. ``pause`` is each pod's
sandbox: a static C program that sleeps until SIGTERM and reaps orphans.
``busybox`` (Debian's static build) is the node tests' tool box: a shell,
``httpd``, ``wget`` and ``nslookup`` in one 2 MB binary. Each image is
cached under the user's cache folder by the hash of its inputs, and its
reference is ``vigil.local/<name>:<hash>``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vigil.devcluster.packages import ensure_packages

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signum) { (void)signum; _exit(0); }
static void reap(int signum) { (void)signum; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""

BUSYBOX = Path("/bin/busybox")
BUSYBOX_TOOLS = (
    "sh", "cat", "id", "touch", "wget", "ssl_client", "nslookup", "httpd", "sleep", "echo",
)  # fmt: skip
#: What the busybox image's httpd serves from /www (tests compare it).
BUSYBOX_PAGE = "vigil real node\n"


@dataclass(frozen=True)
class ImageArchive:
    """An image archive to import into containerd, and the reference it carries."""

    ref: str
    path: Path


def _cache_dir() -> Path:
    base = os.environ.get("VIGIL_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vigil"
    )
    return Path(base) / "node-images"


def _add_file(layer: tarfile.TarFile, name: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    layer.addfile(info, io.BytesIO(data))


def _add_link(layer: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    layer.addfile(info)


def _add_dir(layer: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    layer.addfile(info)


def write_docker_archive(
    path: Path, ref: str, layer_tar: bytes, entrypoint: list[str], user: str = ""
) -> None:
    """A docker archive (``docker save`` layout) of a one-layer image named ``ref``."""
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": entrypoint,
                "Env": ["PATH=/bin"],
                "User": user,
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
    ).encode()
    temporary = path.with_suffix(".tmp")
    with tarfile.open(temporary, "w") as archive:
        _add_file(archive, config_name, config, 0o644)
        _add_file(archive, layer_name, layer_tar, 0o644)
        _add_file(archive, "manifest.json", manifest, 0o644)
    temporary.replace(path)


def _layer(build: Callable[[tarfile.TarFile], None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        build(layer)
    return buffer.getvalue()


def _cached(name: str, inputs: bytes, make: Callable[[Path, str], None]) -> ImageArchive:
    tag = hashlib.sha256(inputs).hexdigest()[:12]
    ref = f"vigil.local/{name}:{tag}"
    path = _cache_dir() / f"{name}-{tag}.tar"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path, ref)
    return ImageArchive(ref, path)


def pause_image(log: Callable[[str], None] = print) -> ImageArchive:
    def make(path: Path, ref: str) -> None:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            ensure_packages({"gcc": "gcc", "libc.a": "libc6-dev"}, log)
            compiler = "gcc"
        log("devcluster: building the pause image")
        with tempfile.TemporaryDirectory() as work:
            source = Path(work) / "pause.c"
            source.write_text(PAUSE_C)
            binary = Path(work) / "pause"
            subprocess.run(
                [compiler, "-static", "-Os", "-s", "-o", str(binary), str(source)],
                check=True,
                capture_output=True,
            )
            data = binary.read_bytes()
        write_docker_archive(path, ref, _layer(lambda t: _add_file(t, "pause", data)), ["/pause"])

    return _cached("pause", PAUSE_C.encode(), make)


def busybox_image(log: Callable[[str], None] = print) -> ImageArchive:
    ensure_packages({str(BUSYBOX): "busybox-static"}, log)
    data = BUSYBOX.read_bytes()

    def build(layer: tarfile.TarFile) -> None:
        _add_dir(layer, "bin")
        _add_file(layer, "bin/busybox", data)
        for tool in BUSYBOX_TOOLS:
            _add_link(layer, f"bin/{tool}", "busybox")
        _add_dir(layer, "www")
        _add_file(layer, "www/index.html", BUSYBOX_PAGE.encode(), 0o644)
        _add_dir(layer, "tmp")

    def make(path: Path, ref: str) -> None:
        write_docker_archive(path, ref, _layer(build), ["/bin/busybox"])

    return _cached("busybox", data + BUSYBOX_PAGE.encode() + repr(BUSYBOX_TOOLS).encode(), make)
