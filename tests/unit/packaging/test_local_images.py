"""Local images (vigil.devcluster.images): the archive format and the pause image.

The heavy images (Python base, the project's, MLServer) are built and run by
tests/e2e/images; these checks need only a C compiler.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from vigil.devcluster import images

ROOT = Path(__file__).resolve().parents[3]


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _layer_files(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_docker_archive_names_its_config_and_layers_by_their_digests(tmp_path: Path) -> None:
    payload = tmp_path / "hello"
    payload.write_text("hi\n")
    layer = tmp_path / "layer.tar"
    images.file_layer(layer, {"/etc/hello": (payload, 0o644)})
    archive = tmp_path / "image.tar"
    config = images.image_config({"Cmd": ["/bin/true"]}, created_by="test")
    images.write_docker_archive(archive, "vigil.local/hello:1", [layer], config)

    members = _members(archive)
    (manifest,) = json.loads(members["manifest.json"])
    assert manifest["RepoTags"] == ["vigil.local/hello:1"]
    blob = members[manifest["Config"]]
    assert manifest["Config"] == hashlib.sha256(blob).hexdigest() + ".json"
    (layer_name,) = manifest["Layers"]
    layer_bytes = members[layer_name]
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    assert json.loads(blob)["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    assert json.loads(blob)["config"] == {"Cmd": ["/bin/true"]}
    (entry,) = _layer_files(layer_bytes).values()
    assert (entry.name, entry.mode, entry.uid, entry.mtime) == ("etc/hello", 0o644, 0, 0)


def test_an_unknown_image_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(images.ImageError, match=r"unknown image.*nginx.*known: pause"):
        images.ensure_images(["nginx"], log=lambda _line: None)


def _builder(root: Path, cache: Path, lines: list[str]) -> images.Builder:
    return images.Builder(root, cache, lines.append)


@pytest.mark.slow
def test_pause_is_built_once_then_served_from_the_cache(tmp_path: Path) -> None:
    lines: list[str] = []
    builder = _builder(ROOT, tmp_path / "cache", lines)
    with builder.locked():
        first = builder.ensure("pause")
    assert first.ref == f"vigil.local/pause:{first.tag}" and first.path.is_file()
    assert any("built pause" in line for line in lines)

    lines.clear()
    again = _builder(ROOT, tmp_path / "cache", lines)
    with again.locked():
        assert again.ensure("pause") == first
    assert [line.split("] ", 1)[1] for line in lines] == [f"pause cached: {first.ref}"]


def test_pause_tag_follows_its_source(tmp_path: Path) -> None:
    changed = tmp_path / "checkout"
    shutil.copytree(ROOT / "hack" / "images" / "pause", changed / "hack" / "images" / "pause")
    source = changed / "hack" / "images" / "pause" / "pause.c"
    before = images.RECIPES["pause"].key(_builder(changed, tmp_path, []))
    source.write_text(source.read_text() + "\n/* changed */\n")
    after = images.RECIPES["pause"].key(_builder(changed, tmp_path, []))
    assert before != after


def test_pause_image_is_one_static_binary_that_stops_on_sigterm(tmp_path: Path) -> None:
    builder = _builder(ROOT, tmp_path / "cache", [])
    with builder.locked():
        archive = builder.ensure("pause")
    members = _members(archive.path)
    (manifest,) = json.loads(members["manifest.json"])
    config = json.loads(members[manifest["Config"]])
    assert config["config"] == {"Entrypoint": ["/pause"], "User": "65535:65535"}
    (layer_name,) = manifest["Layers"]
    files = _layer_files(members[layer_name])
    assert list(files) == ["pause"] and files["pause"].mode == 0o755

    binary = tmp_path / "pause"
    with tarfile.open(fileobj=io.BytesIO(members[layer_name])) as layer:
        binary.write_bytes(layer.extractfile("pause").read())  # type: ignore[union-attr]
    binary.chmod(0o755)
    headers = subprocess.run(["readelf", "-l", str(binary)], capture_output=True, text=True)
    assert headers.returncode == 0 and "INTERP" not in headers.stdout, "pause must be static"
    process = subprocess.Popen([str(binary)], stderr=subprocess.DEVNULL)
    _wait_until_it_catches(process.pid, signal.SIGTERM)
    assert process.poll() is None, "pause exited on its own"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0


def _wait_until_it_catches(pid: int, signo: int) -> None:
    """Until ``pid``'s handler for ``signo`` is installed (SigCgt in /proc/<pid>/status)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        if caught & (1 << (signo - 1)):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never installed a handler for signal {signo}")


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def test_a_ca_of_this_machine_is_found_wherever_an_image_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own, public = os.urandom(700), os.urandom(700)
    local, mozilla = tmp_path / "local", tmp_path / "mozilla"
    local.mkdir()
    mozilla.mkdir()
    (local / "corp.crt").write_text(_pem(own))
    (mozilla / "root.crt").write_text(_pem(public))
    bundle = tmp_path / "bundle.crt"
    bundle.write_text(_pem(public) + _pem(own))
    for variable in images.CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_CERT", str(bundle))
    needles = images.machine_secrets(local, mozilla)
    assert needles == sorted([own, base64.b64encode(own)[:64]]), "the public root is no secret"

    der = tmp_path / "blob.bin"
    der.write_bytes(b"\0" * 100 + own + b"\0" * 100)
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\nindex-url = https://example.invalid/simple\n")
    layer = tmp_path / "layer.tar"
    files = {
        "etc/ssl/certs/ca-certificates.crt": bundle,
        "usr/share/ca-certificates/root.crt": mozilla / "root.crt",
        "etc/pip.conf": pip_conf,
        "opt/blob.bin": der,
        "wheels/numpy.whl": der,
    }
    images.file_layer(layer, {name: (path, 0o644) for name, path in files.items()})
    archive = tmp_path / "image.tar"
    config = images.image_config({"Env": ["PATH=/usr/bin", "PIP_CERT=/x.crt"]}, created_by="t")
    images.write_docker_archive(archive, "vigil.local/leaky:1", [layer], config)

    assert images.find_secrets(archive, needles) == [
        "configuration: Env PIP_CERT=/x.crt",
        "/etc/pip.conf (a credential file)",
        "/etc/ssl/certs/ca-certificates.crt (holds a CA of this machine)",
        "/opt/blob.bin (holds a CA of this machine)",
        "/wheels/numpy.whl (the build stage's wheelhouse)",
        "/wheels/numpy.whl (holds a CA of this machine)",
    ]


def test_image_scripts_parse() -> None:
    for shell, script in (
        ("bash", "hack/build-images.sh"),
        ("bash", "hack/images/mlserver-sklearn/lock.sh"),
        ("sh", "hack/images/python-base/setup.sh"),
    ):
        result = subprocess.run([shell, "-n", str(ROOT / script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def _pins(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^ ]*", line) for line in lines), lines
    return {
        name.lower().replace("_", "-"): version
        for name, version in (line.split("==") for line in lines)
    }


def test_model_server_image_pins_every_package_at_the_makefiles_versions() -> None:
    pins = _pins(ROOT / "hack" / "images" / "mlserver-sklearn" / "requirements.txt")
    makefile = (ROOT / "Makefile").read_text()
    wanted = re.search(r"^MLSERVER_PKGS := (.*)$", makefile, re.M)
    assert wanted
    for requirement in wanted.group(1).split():
        name, version = requirement.split("==")
        assert pins[name] == version, requirement
    assert {"scikit-learn", "joblib", "numpy"} <= set(pins)
