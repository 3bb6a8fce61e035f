"""The images built here (hack/build-images.sh) build, run as a pod would run them, and
carry no build secret of this machine.

Heavy on a cold cache (Debian bootstrap, two Dockerfile builds: minutes);
with the cache warm the builds are instant and the checks take under a
minute. Containers run in the private build engine with host networking on
127.0.0.1 only; the archives are also imported into a private containerd,
as the local cluster's node does.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.devcluster import images
from vigil.devcluster.common import free_port
from vigil.devcluster.engine import Docker, ImageError, require_tool

SHIPPED = ("pause", "python-base", "vigil", "mlserver-sklearn")
VIGIL_USER = "65532:65532"
MLSERVER_USER = "1000:1000"


def _log(line: str) -> None:
    print(line, flush=True)


@pytest.fixture(scope="module")
def built() -> dict[str, images.ImageArchive]:
    try:
        return images.ensure_images(SHIPPED, log=_log)
    except ImageError as error:
        pytest.fail(f"the local images could not be built: {error}", pytrace=False)


@pytest.fixture(scope="module")
def docker(built: dict[str, images.ImageArchive]) -> Iterator[Docker]:
    with images.engine_session(log=_log) as engine:
        for archive in built.values():
            engine.load(archive.path, archive.ref)
        yield engine


def _run(docker: Docker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        docker.command("run", "--rm", "--network=none", *args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_image_imports_into_containerd_under_its_reference(
    built: dict[str, images.ImageArchive],
) -> None:
    containerd = require_tool("containerd", "containerd", _log)
    ctr = require_tool("ctr", "containerd", _log)
    with tempfile.TemporaryDirectory(prefix="vigil-ctr-") as scratch:
        root = Path(scratch)
        socket = root / "containerd.sock"
        config = root / "config.toml"
        config.write_text(
            f'version = 2\nroot = "{root / "root"}"\nstate = "{root / "state"}"\n'
            f'[grpc]\n  address = "{socket}"\n'
        )
        with (root / "containerd.log").open("w") as log:
            process = subprocess.Popen(
                [containerd, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 30
            while not socket.exists() and time.monotonic() < deadline:
                assert process.poll() is None, (root / "containerd.log").read_text()[-2000:]
                time.sleep(0.2)
            address = ["--address", str(socket), "--namespace", "k8s.io"]
            for archive in built.values():
                imported = subprocess.run(
                    [ctr, *address, "images", "import", str(archive.path)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert imported.returncode == 0, f"{archive.ref}: {imported.stderr}"
            listed = subprocess.run(
                [ctr, *address, "images", "list", "--quiet"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            assert {archive.ref for archive in built.values()} <= set(listed), listed
        finally:
            process.terminate()
            process.wait(timeout=60)


def test_python_base_has_the_official_images_layout(
    docker: Docker, built: dict[str, images.ImageArchive]
) -> None:
    probe = (
        "import sys, sysconfig, shutil;"
        "print(sys.prefix, sysconfig.get_paths()['purelib'], shutil.which('pip'), sys.version)"
    )
    result = _run(docker, built["python-base"].ref, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    prefix, purelib, pip, version = result.stdout.split(maxsplit=3)
    assert (prefix, purelib, pip) == (
        "/usr/local",
        "/usr/local/lib/python3.11/site-packages",
        "/usr/local/bin/pip",
    )
    assert version.startswith("3.11.")


@pytest.mark.parametrize("command", ["vigil-operator", "vigil-sidecar", "vigil"])
def test_project_image_commands_run_non_root_on_a_read_only_root(
    docker: Docker, built: dict[str, images.ImageArchive], command: str
) -> None:
    result = _run(
        docker,
        "--read-only",
        f"--user={VIGIL_USER}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--entrypoint={command}",
        built["vigil"].ref,
        "--help",
    )
    assert result.returncode == 0, f"{command} --help: {result.stderr[-2000:]}"
    assert "usage" in result.stdout.lower(), result.stdout


def test_project_image_defaults_to_its_non_root_user_and_cannot_write_its_root(
    docker: Docker, built: dict[str, images.ImageArchive]
) -> None:
    probe = textwrap.dedent(
        """
        import errno, importlib.util, os
        import vigil.operator.main, vigil.sidecar.main
        try:
            open("/probe", "w")
        except OSError as error:
            print(os.getuid(), errno.errorcode[error.errno])
        print(importlib.util.find_spec("vigil.devcluster") is None)
        """
    )
    result = _run(docker, "--read-only", "--entrypoint=python", built["vigil"].ref, "-c", probe)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["65532", "EROFS", "True"]


def test_mlserver_image_serves_a_model_trained_here_non_root_on_a_read_only_root(
    docker: Docker, built: dict[str, images.ImageArchive], tmp_path: Path
) -> None:

    from vigil.devcluster.models import train_wine

    model = train_wine(tmp_path / "wine")
    model.folder.chmod(0o755)
    ports = {"HTTP": free_port(), "GRPC": free_port(), "METRICS": free_port()}
    name = f"vigil-mlserver-test-{tmp_path.name[-12:]}"
    started = subprocess.run(
        docker.command(
            "run",
            "--detach",
            f"--name={name}",
            "--network=host",
            "--read-only",
            "--tmpfs=/tmp",
            f"--user={MLSERVER_USER}",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            f"--volume={model.folder}:/mnt/models:ro",
            "--env=MLSERVER_HOST=127.0.0.1",
            *(f"--env=MLSERVER_{kind}_PORT={port}" for kind, port in ports.items()),
            built["mlserver-sklearn"].ref,
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{ports['HTTP']}"
    try:
        _wait_ready(docker, name, f"{base}/v2/models/wine/ready")
        rows = model.X[:5]
        request = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": rows.flatten().tolist(),
                }
            ]
        }
        answer = _post(f"{base}/v2/models/wine/infer", request)
        (output,) = answer["outputs"]
        expected = model.predict(rows)
        assert output["data"] == expected.tolist(), answer
        assert answer["model_name"] == "wine"
    finally:
        subprocess.run(docker.command("rm", "--force", name), capture_output=True, check=False)


def _wait_ready(docker: Docker, name: str, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        state = subprocess.run(
            docker.command("inspect", "--format={{.State.Running}}", name),
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if state != "true":
            break
        time.sleep(0.5)
    logs = subprocess.run(
        docker.command("logs", "--tail=30", name), capture_output=True, text=True, check=False
    )
    pytest.fail(f"MLServer never became ready at {url}:\n{logs.stdout}{logs.stderr}")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("name", SHIPPED)
def test_no_ca_wheelhouse_or_build_setting_of_this_machine_is_in_a_shipped_image(
    built: dict[str, images.ImageArchive], name: str
) -> None:
    needles = images.machine_secrets()
    assert images.find_secrets(built[name].path, needles) == []


def test_shipped_images_run_as_their_declared_users(
    built: dict[str, images.ImageArchive],
) -> None:
    users = {name: images.archive_config(built[name].path).get("User", "") for name in SHIPPED}
    assert users == {
        "pause": "65535:65535",
        "python-base": "",
        "vigil": VIGIL_USER,
        "mlserver-sklearn": MLSERVER_USER,
    }
