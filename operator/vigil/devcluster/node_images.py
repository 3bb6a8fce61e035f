"""The real node's tool-box image: Debian's static busybox, built here with no registry.

The node tests' pods run it: a shell, ``httpd``, ``wget`` and ``nslookup``
in one 2 MB binary. Written with the images module's archive format and
cached beside its images (``<cache>/images/busybox/<tag>.tar``), the tag a
hash of its inputs; the node imports it with ``RealNode.load_images``.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from vigil.devcluster.images import (
    REGISTRY,
    ImageArchive,
    cache_dir,
    image_config,
    write_docker_archive,
)
from vigil.devcluster.packages import ensure_packages

BUSYBOX = Path("/bin/busybox")
BUSYBOX_TOOLS = (
    "sh", "cat", "id", "touch", "wget", "ssl_client", "nslookup", "httpd", "sleep", "echo",
)  # fmt: skip
#: What the busybox image's httpd serves from /www (tests compare it).
BUSYBOX_PAGE = "vigil real node\n"


def _layer(path: Path, binary: bytes) -> None:
    def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
        layer.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as layer:
        add("bin", tarfile.DIRTYPE, 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, binary)
        for tool in BUSYBOX_TOOLS:
            add(f"bin/{tool}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("www", tarfile.DIRTYPE, 0o755)
        add("www/index.html", tarfile.REGTYPE, 0o644, BUSYBOX_PAGE.encode())


def busybox_image(log: Callable[[str], None] = print) -> ImageArchive:
    """The busybox image's archive, built on first use (Debian's busybox-static)."""
    ensure_packages({str(BUSYBOX): "busybox-static"}, log)
    binary = BUSYBOX.read_bytes()
    config = image_config(
        {"Entrypoint": ["/bin/busybox"], "Env": ["PATH=/bin"]}, created_by="node_images.py"
    )
    tag = hashlib.sha256(
        binary + BUSYBOX_PAGE.encode() + repr((BUSYBOX_TOOLS, config)).encode()
    ).hexdigest()[:16]
    archive = ImageArchive(
        "busybox", f"{REGISTRY}/busybox:{tag}", cache_dir() / "busybox" / f"{tag}.tar"
    )
    if not archive.path.is_file():
        archive.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            layer = Path(work) / "layer.tar"
            _layer(layer, binary)
            write_docker_archive(archive.path, archive.ref, [layer], config)
    return archive
