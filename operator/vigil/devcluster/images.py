"""Container images built on this machine, with no registry, cached by their inputs.

``ensure_images(["pause", ...], log)`` returns, for each name, an
:class:`ImageArchive`: a reference ``vigil.local/<name>:<tag>`` and a
docker-archive tar that ``ctr -n k8s.io images import`` (and ``docker load``)
accepts. The tag is a hash of everything the image is made from (sources,
recipe, tool and package versions), so an unchanged input never rebuilds and
a changed one never serves a stale image. Archives live in
``~/.cache/vigil/images/<name>/<tag>.tar`` (``$VIGIL_CACHE_DIR`` moves it).

Images:

``pause``
    The pod sandbox's process (``hack/images/pause/pause.c``, static, in an
    image with nothing else), for containerd's ``sandbox_image``.

Development tooling only: never shipped to clusters.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGISTRY = "vigil.local"
IMAGE_NAMES = ("pause",)
# Bumped when the way an archive is assembled changes, so old archives rebuild.
ARCHIVE_FORMAT = "docker-archive/1"
# Archives kept per image name: the current one and the one before (another
# checkout may be on the previous sources).
KEEP_PER_NAME = 2
EPOCH = "1970-01-01T00:00:00Z"

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built; the message says which, why, and where its log is."""


@dataclass(frozen=True)
class ImageArchive:
    """A built image: its reference and a docker-archive tar holding it."""

    name: str
    ref: str
    path: Path

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


def cache_dir() -> Path:
    """``$VIGIL_CACHE_DIR`` (or ``~/.cache/vigil``) ``/images``, as for the binaries."""
    base = os.environ.get("VIGIL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "vigil"
    )
    return Path(base) / "images"


def source_root() -> Path:
    """The checkout holding the images' recipes (``hack/images``)."""
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "hack" / "images").is_dir():
        return checkout
    raise ImageError(f"no hack/images beside {__file__}: images are built from a Vigil checkout")


def ensure_images(names: Iterable[str], log: Log = print) -> dict[str, ImageArchive]:
    """Build what is missing among ``names`` (and what they are built on); return all."""
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in IMAGE_NAMES]
    if unknown:
        raise ImageError(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGE_NAMES)}")
    builder = Builder(source_root(), cache_dir(), log)
    with builder.locked():
        return {name: builder.ensure(name) for name in wanted}


class Builder:
    """Builds images into the cache, one process at a time (a file lock)."""

    def __init__(self, root: Path, cache: Path, log: Log) -> None:
        self.root = root
        self.cache = cache
        self.log = log
        self.started = time.monotonic()
        self._built: dict[str, ImageArchive] = {}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / ".lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"waiting for another image build ({self.cache / '.lock'})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def say(self, message: str) -> None:
        self.log(f"images: [{time.monotonic() - self.started:.0f}s] {message}")

    def ensure(self, name: str) -> ImageArchive:
        if name in self._built:
            return self._built[name]
        recipe = RECIPES[name]
        key = recipe.key(self)
        tag = key[:16]
        ref = f"{REGISTRY}/{name}:{tag}"
        folder = self.cache / name
        archive = ImageArchive(name, ref, folder / f"{tag}.tar")
        if archive.path.is_file():
            self.say(f"{name} cached: {ref}")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.say(f"building {name} ({ref}) ...")
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=f"vigil-{name}-", dir=folder) as work:
                recipe.build(self, archive, Path(work))
            seconds = time.monotonic() - started
            size = archive.path.stat().st_size
            (folder / f"{tag}.json").write_text(
                json.dumps({"ref": ref, "build_seconds": round(seconds, 1), "bytes": size})
            )
            self.say(f"built {name} in {seconds:.0f}s ({size / 1e6:.1f} MB archive)")
            _prune(folder, keep=archive.path)
        self._built[name] = archive
        return archive


@dataclass(frozen=True)
class Recipe:
    """How one image is keyed (``key``) and made (``build`` writes ``archive.path``)."""

    key: Callable[[Builder], str]
    build: Callable[[Builder, ImageArchive, Path], None]


def digest(*parts: bytes | str) -> str:
    """A sha256 over length-prefixed parts (so ``ab|c`` and ``a|bc`` differ)."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()


def run(command: Sequence[str], *, what: str, log_path: Path | None = None) -> str:
    """Run ``command``; on failure raise an ImageError naming ``what`` and the output's end."""
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if log_path is not None:
        with log_path.open("a") as handle:
            handle.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        where = f" (log: {log_path})" if log_path is not None else ""
        raise ImageError(f"{what} failed (exit {result.returncode}){where}: " + " | ".join(tail))
    return result.stdout


# ---------------------------------------------------------------- docker-archive


def oci_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def image_config(config: Mapping[str, Any], created_by: str) -> dict[str, Any]:
    """An image configuration (without ``rootfs``) for one-layer images made here."""
    return {
        "architecture": oci_architecture(),
        "os": "linux",
        "created": EPOCH,
        "config": dict(config),
        "history": [{"created": EPOCH, "created_by": created_by}],
    }


def file_layer(path: Path, files: Mapping[str, tuple[Path, int]]) -> None:
    """A reproducible layer tar holding ``files`` (name in image -> host file, mode)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as layer:
        for name in sorted(files):
            source, mode = files[name]
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = source.stat().st_size
            info.mode = mode
            with source.open("rb") as handle:
                layer.addfile(info, handle)


def write_docker_archive(
    path: Path, ref: str, layers: Sequence[Path], config: Mapping[str, Any]
) -> None:
    """``docker save``'s format: ``manifest.json``, the config, one tar per layer.

    Layers are stored uncompressed; their digests are the config's
    ``rootfs.diff_ids``, as the format requires.
    """
    diff_ids = [f"sha256:{_file_sha256(layer)}" for layer in layers]
    blob = json.dumps(
        {**config, "rootfs": {"type": "layers", "diff_ids": diff_ids}},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    config_name = f"{hashlib.sha256(blob).hexdigest()}.json"
    layer_names = [f"{diff_id.removeprefix('sha256:')}/layer.tar" for diff_id in diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": layer_names}])
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, config_name, blob)
        for name, layer in zip(layer_names, layers, strict=True):
            info = tarfile.TarInfo(name)
            info.size = layer.stat().st_size
            with layer.open("rb") as handle:
                archive.addfile(info, handle)
        _add_bytes(archive, "manifest.json", manifest.encode())
    partial.replace(path)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _prune(folder: Path, keep: Path) -> None:
    """Drop all but the newest archives of one image (and their notes)."""
    archives = sorted(folder.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [a for a in archives if a != keep][KEEP_PER_NAME - 1 :]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


# ---------------------------------------------------------------- pause

PAUSE_CFLAGS = ("-Os", "-static", "-s", "-Wall", "-Wextra", "-Werror")


def _compiler() -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ImageError(
            "the pause image needs a C compiler with a static C library: "
            "install Debian's gcc and libc6-dev (apt-get install gcc libc6-dev)"
        )
    return compiler


def _pause_key(builder: Builder) -> str:
    compiler = _compiler()
    version = run([compiler, "--version"], what="cc --version").splitlines()[0]
    source = (builder.root / "hack" / "images" / "pause" / "pause.c").read_bytes()
    return digest(ARCHIVE_FORMAT, "pause", source, version, *PAUSE_CFLAGS, oci_architecture())


def _pause_build(builder: Builder, archive: ImageArchive, work: Path) -> None:
    binary = work / "pause"
    source = builder.root / "hack" / "images" / "pause" / "pause.c"
    run(
        [_compiler(), *PAUSE_CFLAGS, "-o", str(binary), str(source)],
        what="compiling pause.c statically (needs Debian's libc6-dev)",
    )
    layer = work / "layer.tar"
    file_layer(layer, {"pause": (binary, 0o755)})
    config = image_config(
        {"Entrypoint": ["/pause"], "User": "65535:65535"}, created_by="hack/images/pause/pause.c"
    )
    write_docker_archive(archive.path, archive.ref, [layer], config)


RECIPES: dict[str, Recipe] = {
    "pause": Recipe(key=_pause_key, build=_pause_build),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vigil.devcluster.images [NAME ...]``: build, print ``ref path`` lines."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(f"usage: hack/build-images.sh [NAME ...]   (names: {', '.join(IMAGE_NAMES)})")
        return 0
    try:
        archives = ensure_images(args or IMAGE_NAMES, log=lambda line: print(line, flush=True))
    except ImageError as error:
        print(f"build-images: {error}", file=sys.stderr)
        return 1
    for archive in archives.values():
        print(f"{archive.ref} {archive.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
