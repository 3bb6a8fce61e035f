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
``python-base``
    Debian bookworm (``debootstrap --variant=minbase``, point and security
    updates) with Python 3.11 in the official ``python`` image's layout:
    ``python3 -m venv /usr/local``, so ``pip install --prefix=/install`` then
    ``COPY /install /usr/local`` works as on ``python:3.11-slim``.
``vigil``
    The project's ``Dockerfile``, unmodified in behaviour, with
    ``PYTHON_IMAGE`` set to the local base.
``mlserver-sklearn``
    MLServer and its scikit-learn runtime at the versions pinned in
    ``hack/images/mlserver-sklearn/requirements.txt``.

Only the host reaches a network: debootstrap and apt use the host's Debian
mirrors, and Python packages are fetched as wheels on the host (``pip
download``, with this machine's pip settings and CA) into
``~/.cache/vigil/images/wheels``. Dockerfile builds run with
``--network=none`` in a private ``dockerd`` (Debian's ``docker.io``,
installed when missing; see ``engine.py``) and install from a build stage
image that holds the wheels (``BUILD_IMAGE``); shipped images are ``FROM``
the bare base. Before an archive is cached it is scanned for this
machine's own CAs and build settings (``find_secrets``).

Development tooling only: never shipped to clusters.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import itertools
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vigil.devcluster.engine import (
    Docker,
    ImageError,
    docker_engine,
    require_tool,
    run,
    stream,
    unmount_under,
)

__all__ = ["IMAGE_NAMES", "ImageArchive", "ImageError", "engine_session", "ensure_images"]

REGISTRY = "vigil.local"
IMAGE_NAMES = ("pause", "python-base", "vigil", "mlserver-sklearn")
# Bumped when the way an archive is assembled changes, so old archives rebuild.
ARCHIVE_FORMAT = "docker-archive/1"
DEBIAN_SUITE = "bookworm"
# Host candidates of these Debian packages enter the base's key: when Debian
# moves them (and the host's apt lists know it), the base rebuilds.
DEBIAN_KEY_PACKAGES = (
    "python3.11",
    "libpython3.11-stdlib",
    "python3.11-venv",
    "libc6",
    "libssl3",
    "ca-certificates",
    "tzdata",
)
# Wheels for the images' Python (Debian bookworm: CPython 3.11 on glibc 2.36),
# whatever Python runs this module.
WHEEL_TARGET = (
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
    "--abi=abi3",
    "--abi=none",
    *(f"--platform=manylinux_2_{minor}_x86_64" for minor in range(5, 37)),
    "--platform=manylinux1_x86_64",
    "--platform=manylinux2010_x86_64",
    "--platform=manylinux2014_x86_64",
)
# Archives kept per image name: the current one and the one before (another
# checkout may be on the previous sources).
KEEP_PER_NAME = 2
WHEELS_KEPT_SECONDS = 7 * 24 * 3600
EPOCH = "1970-01-01T00:00:00Z"

Log = Callable[[str], None]


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


@contextlib.contextmanager
def engine_session(log: Log = print) -> Iterator[Docker]:
    """The private engine, with the image cache locked: for checks that run built images."""
    builder = Builder(source_root(), cache_dir(), log)
    with builder.locked():
        yield builder.engine()


class Builder:
    """Builds images into the cache, one process at a time (a file lock)."""

    def __init__(
        self, root: Path, cache: Path, log: Log, recipes: Mapping[str, Recipe] | None = None
    ) -> None:
        self.root = root
        # Images built elsewhere (kind_node.py) bring their recipes; keys and
        # archives work the same for them.
        self.recipes = {**RECIPES, **(recipes or {})}
        self.cache = cache
        self.log = log
        self.started = time.monotonic()
        self.logs = cache / "logs"
        self._built: dict[str, ImageArchive] = {}
        self._keys: dict[str, str] = {}
        self._engine: Docker | None = None
        self._stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's lock; stop the engine (if one was started) on the way out."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.cache / ".lock").open("w") as handle, self._stack:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"waiting for another image build ({self.cache / '.lock'})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def say(self, message: str) -> None:
        self.log(f"images: [{time.monotonic() - self.started:.0f}s] {message}")

    def engine(self) -> Docker:
        if self._engine is None:
            self._engine = self._stack.enter_context(
                docker_engine(self.cache / "docker", self.logs, self.say)
            )
        return self._engine

    def key(self, name: str) -> str:
        if name not in self._keys:
            self._keys[name] = self.recipes[name].key(self)
        return self._keys[name]

    def ensure(self, name: str) -> ImageArchive:
        if name in self._built:
            return self._built[name]
        tag = self.key(name)[:16]
        ref = f"{REGISTRY}/{name}:{tag}"
        folder = self.cache / name
        archive = ImageArchive(name, ref, folder / f"{tag}.tar")
        if archive.path.is_file():
            self.say(f"{name} cached: {ref}")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            _remove_stale_work(folder, self.say)
            self.say(f"building {name} ({ref}) ...")
            started = time.monotonic()
            log_path = self.logs / f"{name}.log"
            log_path.write_text("")
            with _work_dir(folder, name) as work:
                recipe_size = self.recipes[name].build(self, archive, work, log_path)
            leaks = find_secrets(archive.path, machine_secrets())
            if leaks:
                archive.path.unlink()
                raise ImageError(
                    f"{name} would ship a build secret of this machine (a CA of its own, or "
                    f"pip/proxy settings): {'; '.join(leaks[:5])}"
                )
            seconds = time.monotonic() - started
            size = archive.path.stat().st_size
            (folder / f"{tag}.json").write_text(
                json.dumps(
                    {
                        "ref": ref,
                        "build_seconds": round(seconds, 1),
                        "archive_bytes": size,
                        "image_bytes": recipe_size,
                    }
                )
            )
            self.say(f"built {name} in {seconds:.0f}s ({size / 1e6:.1f} MB archive)")
            _prune(folder, keep=archive.path)
        self._built[name] = archive
        return archive

    def files_digest(self, *relative: str) -> str:
        """A digest of files and folders of the checkout (paths and contents)."""
        parts: list[bytes | str] = []
        for entry in relative:
            path = self.root / entry
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if "__pycache__" in file.parts:
                    continue
                parts += [str(file.relative_to(self.root)), file.read_bytes()]
        return digest(*parts)

    def wheels(self, requirements: Sequence[Path]) -> Path:
        """Wheels of pinned ``requirements`` for the images' Python, fetched once on the host.

        The folder also holds ``requirements.txt`` (all of them, concatenated),
        so a build installs with ``pip install --no-deps -r`` from it, offline.
        """
        text = "\n".join(path.read_text() for path in requirements)
        folder = self.cache / "wheels" / digest("wheels", *WHEEL_TARGET, text)[:16]
        if (folder / "requirements.txt").is_file():
            os.utime(folder)
            return folder
        _prune_wheels(folder.parent)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        names = ", ".join(str(path.relative_to(self.root)) for path in requirements)
        self.say(f"fetching wheels for {names} (pip download, on the host) ...")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                *WHEEL_TARGET,
                f"--dest={partial}",
                *(f"--requirement={path}" for path in requirements),
            ],
            what=f"pip download of the wheels of {names}",
            log_path=self.logs / "wheels.log",
        )
        (partial / "requirements.txt").write_text(text)
        shutil.rmtree(folder, ignore_errors=True)
        partial.replace(folder)
        return folder

    def build_stage(self, name: str, base: ImageArchive, wheels: Path) -> str:
        """The build stage of image ``name``: the base plus its wheels, pip offline."""
        docker = self.engine()
        dockerfile = self.root / BUILD_STAGE
        repository = f"{REGISTRY}/{name}-build-stage"
        ref = f"{repository}:{digest(base.ref, wheels.name, dockerfile.read_bytes())[:16]}"
        if not docker.has_image(ref):
            docker.load(base.path, base.ref)
            docker.run(
                "build",
                "--network=none",
                f"--file={dockerfile}",
                f"--build-arg=BASE={base.ref}",
                f"--tag={ref}",
                str(wheels),
                what=f"docker build of {name}'s build stage (base + wheels)",
            )
            docker.drop_other_tags(repository, keep=ref)
        return ref

    def docker_build(
        self,
        archive: ImageArchive,
        dockerfile: Path,
        context: Path,
        build_args: Mapping[str, str],
        log_path: Path,
    ) -> int:
        """``docker build`` (offline), then ``docker save`` to the archive; the image's size."""
        docker = self.engine()

        def progress(line: str) -> None:
            if line.startswith("Step "):
                self.say(f"{archive.name}: {line[:110]}")

        stream(
            docker.command(
                "build",
                "--network=none",
                "--force-rm",
                f"--file={dockerfile}",
                *(f"--build-arg={name}={value}" for name, value in build_args.items()),
                f"--tag={archive.ref}",
                str(context),
            ),
            what=f"docker build of {archive.name}",
            log_path=log_path,
            progress=progress,
            env={"DOCKER_BUILDKIT": "0"},
        )
        partial = archive.path.with_name(archive.path.name + ".partial")
        docker.run("save", f"--output={partial}", archive.ref, what=f"docker save of {archive.ref}")
        partial.replace(archive.path)
        docker.drop_other_tags(archive.ref.rsplit(":", 1)[0], keep=archive.ref)
        return docker.image_size(archive.ref)


@dataclass(frozen=True)
class Recipe:
    """How one image is keyed and made (``build`` writes ``archive.path``, returns its size)."""

    key: Callable[[Builder], str]
    build: Callable[[Builder, ImageArchive, Path, Path], int]


def digest(*parts: bytes | str) -> str:
    """A sha256 over length-prefixed parts (so ``ab|c`` and ``a|bc`` differ)."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()


#: The scratch folders this process builds in now (``_remove_stale_work`` spares them).
_working: set[Path] = set()


@contextlib.contextmanager
def _work_dir(folder: Path, name: str) -> Iterator[Path]:
    """A scratch folder; never deleted while something is still mounted inside it."""
    work = Path(tempfile.mkdtemp(prefix=f"build-{name}-", dir=folder))
    _working.add(work)
    try:
        yield work
    finally:
        _working.discard(work)
        if unmount_under(work):
            shutil.rmtree(work, ignore_errors=True)


def _remove_stale_work(folder: Path, say: Log) -> None:
    """Remove the scratch folders of builds that were killed (a debootstrap root file system,
    /proc and /sys perhaps still mounted in it): gigabytes each, left by every SIGKILL.

    Called holding the cache's lock, which every build holds while it works: a scratch
    folder not this process's own is a dead build's. Mounts go first (lazily), and a folder
    with one still there is kept rather than deleted through it.
    """
    for work in sorted(folder.glob("build-*")):
        if work in _working or work.is_symlink() or not work.is_dir():
            continue
        if unmount_under(work):
            say(f"removing {work}, left by a build that was stopped")
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"keeping {work}: something is still mounted inside it")


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
    # One name per process: two test workers may build the same archive at once.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
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


def _prune_wheels(folder: Path) -> None:
    """Drop wheel sets no build has used for a week (requirements that moved on)."""
    cutoff = time.time() - WHEELS_KEPT_SECONDS
    for wheels in folder.glob("*"):
        if wheels.is_dir() and wheels.stat().st_mtime < cutoff:
            shutil.rmtree(wheels, ignore_errors=True)


def _prune(folder: Path, keep: Path) -> None:
    """Drop all but the newest archives of one image (and their notes)."""
    archives = sorted(folder.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [a for a in archives if a != keep][KEEP_PER_NAME - 1 :]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


# ---------------------------------------------------------------- build secrets

# Debian's folder for a machine's own CAs, and the variables that point tools
# at a bundle holding them (pip's PIP_CERT among them).
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
CA_BUNDLE_VARIABLES = (
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
)
# The public roots Debian ships: images carry them legitimately (ca-certificates, certifi).
PUBLIC_CA_DIR = Path("/usr/share/ca-certificates/mozilla")
# Settings of a build machine that must not be baked into a shipped image's configuration.
BUILD_ONLY_VARIABLES = re.compile(
    r"^(PIP_(CERT|INDEX_URL|EXTRA_INDEX_URL|FIND_LINKS|NO_INDEX|TRUSTED_HOST|CLIENT_CERT)"
    r"|REQUESTS_CA_BUNDLE|SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|NODE_EXTRA_CA_CERTS"
    r"|(HTTPS?|NO|ALL)_PROXY)$",
    re.I,
)
CREDENTIAL_FILES = ("pip.conf", "pip.ini", ".netrc", ".pypirc")
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def machine_secrets(
    local_ca_dir: Path = LOCAL_CA_DIR, public_ca_dir: Path = PUBLIC_CA_DIR
) -> list[bytes]:
    """Byte strings no shipped image may hold: this machine's own CA certificates.

    The certificates of the local CA folder and of every bundle the
    environment points tools at, less Debian's public ones; each as DER and
    as the first line of its PEM body.
    """
    files = [path for path in local_ca_dir.rglob("*") if path.is_file()]
    files += [Path(os.environ[name]) for name in CA_BUNDLE_VARIABLES if os.environ.get(name)]
    public = {der for path in public_ca_dir.glob("*.crt") for der in pem_certificates(path)}
    own = {der for path in files if path.is_file() for der in pem_certificates(path)} - public
    return sorted(needle for der in own for needle in (der, base64.b64encode(der)[:64]))


def pem_certificates(path: Path) -> list[bytes]:
    """The DER bytes of every PEM certificate in ``path``."""
    bodies = PEM_CERTIFICATE.findall(path.read_bytes())
    return [base64.b64decode(b"".join(body.split())) for body in bodies]


def find_secrets(archive: Path, needles: Sequence[bytes]) -> list[str]:
    """What in a docker-archive a build machine left behind: files holding a needle,
    credential files (pip.conf, .netrc), the build stage's wheelhouse, build-only
    variables in the configuration."""
    found = [
        f"configuration: Env {variable}"
        for variable in archive_config(archive).get("Env") or []
        if BUILD_ONLY_VARIABLES.match(variable.split("=", 1)[0])
    ]
    with tarfile.open(archive) as outer:
        (entry,) = json.load(_member(outer, "manifest.json"))
        for layer_name in entry["Layers"]:
            with tarfile.open(fileobj=_member(outer, layer_name), mode="r|*") as layer:
                for member in layer:
                    if member.name.startswith(("wheels/", "./wheels/")):
                        found.append(f"/{member.name} (the build stage's wheelhouse)")
                    if not member.isfile():
                        continue
                    if Path(member.name).name in CREDENTIAL_FILES:
                        found.append(f"/{member.name} (a credential file)")
                    data = _member(layer, member).read()
                    if any(needle in data for needle in needles):
                        found.append(f"/{member.name} (holds a CA of this machine)")
    return found


def archive_config(archive: Path) -> dict[str, Any]:
    """The run settings (``Env``, ``User``, ``Entrypoint`` ...) of a one-image archive."""
    with tarfile.open(archive) as outer:
        (entry,) = json.load(_member(outer, "manifest.json"))
        config: dict[str, Any] = json.load(_member(outer, entry["Config"])).get("config") or {}
    return config


def _member(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> IO[bytes]:
    handle = archive.extractfile(member)
    if handle is None:
        raise ImageError(f"{archive.name}: {member} is not a file")
    return handle


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


def _pause_build(builder: Builder, archive: ImageArchive, work: Path, log_path: Path) -> int:
    binary = work / "pause"
    source = builder.root / "hack" / "images" / "pause" / "pause.c"
    run(
        [_compiler(), *PAUSE_CFLAGS, "-o", str(binary), str(source)],
        what="compiling pause.c statically (needs Debian's libc6-dev)",
        log_path=log_path,
    )
    layer = work / "layer.tar"
    file_layer(layer, {"pause": (binary, 0o755)})
    config = image_config(
        {"Entrypoint": ["/pause"], "User": "65535:65535"}, created_by="hack/images/pause/pause.c"
    )
    write_docker_archive(archive.path, archive.ref, [layer], config)
    return layer.stat().st_size


# ---------------------------------------------------------------- python-base

BASE_RECIPE = Path("hack") / "images" / "python-base"
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# A clean environment in the new root: none of this machine's settings (pip, CA) go in.
CLEAN_CHROOT = ("env", "-i", "HOME=/root", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "chroot")
# debootstrap's milestones, shown as progress (the rest goes to the log).
DEBOOTSTRAP_MILESTONES = (
    "I: Retrieving Release",
    "I: Retrieving Packages",
    "I: Installing core packages",
    "I: Unpacking the base system",
    "I: Configuring the base system",
    "I: Base system installed successfully",
)


def debian_sources(suite: str = DEBIAN_SUITE) -> list[str]:
    """``deb`` lines for ``suite`` and its updates and security suites, from the host's apt.

    The base uses the mirrors this machine's apt is configured with, whatever
    they are (``apt-cache policy`` lists them with their release fields).
    """
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    lines = run(["apt-cache", "policy"], what="apt-cache policy").splitlines()
    sources: set[str] = set()
    for entry, release in itertools.pairwise(lines):
        fields = entry.split()
        if len(fields) < 5 or not fields[1].startswith("http") or fields[-1] != "Packages":
            continue
        origin = dict(item.split("=", 1) for item in release.split()[-1].split(",") if "=" in item)
        name, _, component = fields[2].partition("/")
        if origin.get("o") == "Debian" and name in wanted and component == "main":
            sources.add(f"deb {fields[1]} {name} main")
    if not any(line.endswith(f" {suite} main") for line in sources):
        raise ImageError(
            f"apt knows no Debian {suite} source (apt-cache policy): the images' Python base "
            f"is Debian {suite}, bootstrapped from this machine's own apt sources, so the host "
            f"must be Debian 12 ({suite}) with its {suite} main source configured (README, "
            "Prerequisites)"
        )
    return sorted(sources)


def debian_candidates(packages: Sequence[str]) -> dict[str, str]:
    """The versions apt would install for ``packages`` (updating apt's lists once if unknown)."""

    def candidates() -> dict[str, str]:
        text = run(["apt-cache", "policy", *packages], what="apt-cache policy")
        found = re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", text, re.M)
        return {name: version for name, version in found if version != "(none)"}

    found = candidates()
    if len(found) < len(packages) and os.geteuid() == 0:
        run(["apt-get", "-qq", "update"], what="apt-get update")
        found = candidates()
    missing = sorted(set(packages) - set(found))
    if missing:
        raise ImageError(
            f"apt has no candidate for {', '.join(missing)}: the images' Python base takes "
            f"these from Debian {DEBIAN_SUITE}, so the host must be Debian 12 ({DEBIAN_SUITE}) "
            "with its apt sources (run apt-get update as root if it is)"
        )
    return found


def _base_key(builder: Builder) -> str:
    versions = debian_candidates(DEBIAN_KEY_PACKAGES)
    return digest(
        ARCHIVE_FORMAT,
        "python-base",
        DEBIAN_SUITE,
        *debian_sources(),
        *(f"{name}={version}" for name, version in sorted(versions.items())),
        builder.files_digest(str(BASE_RECIPE)),
        *WHEEL_TARGET,
        oci_architecture(),
    )


def debootstrap(say: Log, rootfs: Path, packages: Sequence[str], name: str, log_path: Path) -> None:
    """A minimal Debian root file system in ``rootfs`` from this machine's own mirror."""
    tool = require_tool("debootstrap", "debootstrap", say)
    sources = debian_sources()
    mirror = next(
        (line.split()[1] for line in sources if line.endswith(f" {DEBIAN_SUITE} main")), None
    )
    if mirror is None:
        raise ImageError(
            f"no Debian source for {DEBIAN_SUITE} main among this machine's apt sources: {sources}"
        )

    def progress(line: str) -> None:
        if line.startswith(DEBOOTSTRAP_MILESTONES):
            say(f"{name}: debootstrap: {line[3:]}")

    stream(
        [
            tool,
            "--variant=minbase",
            f"--include={','.join(packages)}",
            DEBIAN_SUITE,
            str(rootfs),
            mirror,
        ],
        what=f"debootstrap of {name}'s Debian {DEBIAN_SUITE}",
        log_path=log_path,
        progress=progress,
    )


def tar_root_filesystem(rootfs: Path, layer: Path, log_path: Path) -> None:
    """``rootfs`` as one layer tar (numeric owners, extended attributes, a stable order)."""
    run(
        [
            "tar",
            "--create",
            f"--file={layer}",
            "--numeric-owner",
            "--xattrs",
            "--sort=name",
            f"--directory={rootfs}",
            # The runtime mounts its own.
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            ".",
        ],
        what=f"tar of {rootfs}",
        log_path=log_path,
    )


def _base_build(builder: Builder, archive: ImageArchive, work: Path, log_path: Path) -> int:
    recipe = builder.root / BASE_RECIPE
    packages = [
        line.strip()
        for line in (recipe / "packages").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = debian_sources()
    wheels = builder.wheels([recipe / "requirements.txt"])
    rootfs = work / "rootfs"
    debootstrap(builder.say, rootfs, packages, "python-base", log_path)
    builder.say("python-base: updates, /usr/local environment, pip")
    shutil.copytree(wheels, rootfs / "tmp" / "wheels")
    shutil.copy(recipe / "setup.sh", rootfs / "tmp" / "setup.sh")
    stream(
        [
            *CLEAN_CHROOT,
            str(rootfs),
            "/bin/sh",
            "/tmp/setup.sh",
            "\n".join(sources),
        ],
        what="python-base's setup.sh in the new root file system",
        log_path=log_path,
        progress=lambda _line: None,
    )
    (rootfs / "tmp" / "setup.sh").unlink()
    version = run(
        [
            *CLEAN_CHROOT,
            str(rootfs),
            "/usr/local/bin/python",
            "-c",
            "import sys; print(sys.version)",
        ],
        what="python in the new base",
    ).split()[0]
    layer = work / "layer.tar"
    tar_root_filesystem(rootfs, layer, log_path)
    config = image_config(
        {
            "Env": [f"{name}={value}" for name, value in BASE_ENV.items()]
            + [f"PYTHON_VERSION={version}"],
            "Cmd": ["python3"],
            "Labels": {"dev.vigil.debian-suite": DEBIAN_SUITE},
        },
        created_by=f"debootstrap --variant=minbase {DEBIAN_SUITE}; {BASE_RECIPE}/setup.sh",
    )
    write_docker_archive(archive.path, archive.ref, [layer], config)
    return layer.stat().st_size


# ---------------------------------------------------------------- Dockerfile images

BUILD_STAGE = Path("hack") / "images" / "build-stage.Dockerfile"
# What the project's Dockerfile reads from its context (besides the base).
VIGIL_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "hack/image/requirements.txt",
    "hack/images/vigil",
    str(BUILD_STAGE),
    "pyproject.toml",
    "README.md",
    "operator",
)
MLSERVER_RECIPE = Path("hack") / "images" / "mlserver-sklearn"


def _vigil_key(builder: Builder) -> str:
    return digest(
        ARCHIVE_FORMAT, "vigil", builder.key("python-base"), builder.files_digest(*VIGIL_INPUTS)
    )


def _vigil_build(builder: Builder, archive: ImageArchive, work: Path, log_path: Path) -> int:
    base = builder.ensure("python-base")
    wheels = builder.wheels(
        [
            builder.root / "hack" / "image" / "requirements.txt",
            builder.root / "hack" / "images" / "vigil" / "build-requirements.txt",
        ]
    )
    stage = builder.build_stage("vigil", base, wheels)
    return builder.docker_build(
        archive,
        builder.root / "Dockerfile",
        builder.root,
        {"PYTHON_IMAGE": base.ref, "BUILD_IMAGE": stage},
        log_path,
    )


def _mlserver_key(builder: Builder) -> str:
    return digest(
        ARCHIVE_FORMAT,
        "mlserver-sklearn",
        builder.key("python-base"),
        builder.files_digest(str(MLSERVER_RECIPE), str(BUILD_STAGE)),
    )


def _mlserver_build(builder: Builder, archive: ImageArchive, work: Path, log_path: Path) -> int:
    base = builder.ensure("python-base")
    recipe = builder.root / MLSERVER_RECIPE
    stage = builder.build_stage(
        "mlserver-sklearn", base, builder.wheels([recipe / "requirements.txt"])
    )
    return builder.docker_build(
        archive,
        recipe / "Dockerfile",
        recipe,
        {"PYTHON_IMAGE": base.ref, "BUILD_IMAGE": stage},
        log_path,
    )


RECIPES: dict[str, Recipe] = {
    "pause": Recipe(key=_pause_key, build=_pause_build),
    "python-base": Recipe(key=_base_key, build=_base_build),
    "vigil": Recipe(key=_vigil_key, build=_vigil_build),
    "mlserver-sklearn": Recipe(key=_mlserver_key, build=_mlserver_build),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vigil.devcluster.images [NAME ...]``: build, print ``ref path`` lines."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(f"usage: hack/build-images.sh [NAME ...]   (names: {', '.join(IMAGE_NAMES)})")
        return 0
    return print_archives(
        "build-images",
        lambda: ensure_images(args or IMAGE_NAMES, log=lambda line: print(line, flush=True)),
        lambda archive: f"{archive.ref} {archive.path}",
    )


def print_archives(
    what: str,
    build: Callable[[], Mapping[str, ImageArchive]],
    line: Callable[[ImageArchive], str],
) -> int:
    """A build command's exit code: each archive's ``line`` on stdout, or ``what: error``."""
    try:
        archives = build()
    except ImageError as error:
        print(f"{what}: {error}", file=sys.stderr)
        return 1
    for archive in archives.values():
        print(line(archive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
