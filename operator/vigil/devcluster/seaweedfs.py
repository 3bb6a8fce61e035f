"""SeaweedFS, the S3-compatible store of the artifact tests and benchmark.

``weed server`` (master, volume, filer and S3 gateway in one process) with
two identities (an admin that uploads, a reader with only Read and List, as
a fetcher's Secret would hold) and telemetry off: as a host process on
127.0.0.1 with ports of its own, or as a pod of the local cluster's real
node (``seaweedfs_image``, ``store_pod``). Built by
``hack/build-seaweedfs.sh`` (``make seaweedfs``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import io
import json
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.devcluster.cluster import repo_root
from vigil.devcluster.common import free_port
from vigil.devcluster.images import (
    REGISTRY,
    ImageArchive,
    cache_dir,
    image_config,
    write_docker_archive,
)
from vigil.fetch.sigv4 import Credentials, sign, uri_encode

START_TIMEOUT = 120.0
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class StoreError(RuntimeError):
    """The store could not be built, started or written to; the words say what to do."""


@dataclass(frozen=True)
class Identity:
    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)


ADMIN = Identity("admin", "vigil-admin", "vigil-admin-secret", ("Admin", "Read", "List", "Write"))
READER = Identity("reader", "vigil-reader", "vigil-reader-secret", ("Read", "List"))


@dataclass(frozen=True)
class S3Store:
    endpoint: str
    port: int
    log: Path
    region: str = "us-east-1"
    #: Where the test reaches it: the loopback for a host process, a pod's IP.
    host: str = "127.0.0.1"


def weed_binary() -> Path:
    """The cached ``weed``; a clear error when it was never built."""
    root = repo_root()
    if root is None:
        raise StoreError("cannot find hack/build-seaweedfs.sh: run from a Vigil checkout")
    script = root / "hack" / "build-seaweedfs.sh"
    printed = subprocess.run(
        ["bash", str(script), "--print"], capture_output=True, text=True, check=True
    )
    binary = Path(printed.stdout.strip())
    if not binary.is_file():
        raise StoreError(f"SeaweedFS is not built ({binary} missing): run make seaweedfs")
    return binary


def server_command(
    binary: Path, folder: Path, ports: list[int], config: Path, bind: str = "127.0.0.1"
) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        str(binary), "server",
        # Its parts find each other on the loopback; ``bind`` is where clients reach it.
        "-ip=127.0.0.1", f"-ip.bind={bind}",
        f"-dir={folder / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        # No statistics leave the machine.
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024", "-volume.max=16",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={config}", f"-s3.localSocket={folder / 's3.sock'}",
    ]  # fmt: skip


def s3_config(identities: tuple[Identity, ...]) -> dict[str, object]:
    return {
        "identities": [
            {
                "name": identity.name,
                "credentials": [
                    {"accessKey": identity.access_key, "secretKey": identity.secret_key}
                ],
                "actions": list(identity.actions),
            }
            for identity in identities
        ]
    }


@contextlib.contextmanager
def running_store(folder: Path) -> Iterator[S3Store]:
    """Start the store in ``folder`` (data, config, log) and stop it on exit."""
    binary = weed_binary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps(s3_config((ADMIN, READER))))
    ports = [free_port() for _ in range(8)]
    log = folder / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            server_command(binary, folder, ports, config),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        store = S3Store(endpoint=f"http://127.0.0.1:{ports[6]}", port=ports[6], log=log)
        try:
            _wait_ready(store, process)
            yield store
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_ready(store: S3Store, process: subprocess.Popen[bytes] | None) -> None:
    """Until a bucket can be made and written: the gateway, filer and a volume are up."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StoreError(f"weed exited with {process.returncode}; see {store.log}")
        try:
            status, body = request(store, "PUT", "vigil-ready", "")
            if status in (200, 409):
                status, body = request(store, "PUT", "vigil-ready", "probe", body=b"ok")
                if status == 200:
                    return
            last = f"{status} {body[:200]!r}"
        except OSError as error:
            last = str(error)
        time.sleep(0.5)
    raise StoreError(f"SeaweedFS not ready after {START_TIMEOUT:.0f} s ({last}); see {store.log}")


def request(
    store: S3Store,
    method: str,
    bucket: str,
    key: str,
    *,
    body: bytes | Path | None = None,
    identity: Identity = ADMIN,
) -> tuple[int, bytes]:
    """One signed request as ``identity``; a Path body is streamed from disk."""
    path = f"/{bucket}" + (f"/{key}" if key else "")
    host = f"{store.host}:{store.port}"
    length = body.stat().st_size if isinstance(body, Path) else len(body or b"")
    headers = sign(
        method,
        path,
        [],
        {"host": host},
        identity.credentials,
        store.region,
        datetime.datetime.now(datetime.UTC),
        payload_sha256=UNSIGNED_PAYLOAD,
    )
    headers["Content-Length"] = str(length)
    connection = http.client.HTTPConnection(store.host, store.port, timeout=120, blocksize=1 << 20)
    try:
        if isinstance(body, Path):
            with body.open("rb") as source:
                connection.request(method, uri_encode(path, keep_slash=True), source, headers)
                response = connection.getresponse()
        else:
            connection.request(method, uri_encode(path, keep_slash=True), body, headers)
            response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def put_object(store: S3Store, bucket: str, key: str, source: Path | bytes) -> None:
    """Upload (the bucket is made when missing); raises :class:`StoreError` with the answer."""
    status, answer = request(store, "PUT", bucket, "")
    if status not in (200, 409):
        raise StoreError(f"cannot make bucket {bucket}: {status} {answer[:300]!r}")
    status, answer = request(store, "PUT", bucket, key, body=source)
    if status != 200:
        raise StoreError(f"cannot upload s3://{bucket}/{key}: {status} {answer[:300]!r}")


# -- in the local cluster ------------------------------------------------------------------

#: The store's ports in its pod (SeaweedFS's defaults); clients use S3_PORT.
POD_PORTS = [9333, 19333, 8080, 18080, 8888, 18888, 8333, 18333]
S3_PORT = POD_PORTS[6]
#: Its writable folder (socket, data in ``data/``): two emptyDirs, one inside the other,
#: since the image has no shell to make the folder.
POD_DATA = Path("/srv")
POD_CONFIG = Path("/etc/seaweedfs/s3.json")
POD_USER = 65532


def seaweedfs_image(log: Callable[[str], None] = print) -> ImageArchive:
    """``weed`` alone in an image (a static Go binary), cached by its hash."""
    binary = weed_binary().read_bytes()
    config = image_config(
        {"Entrypoint": ["/weed"], "User": f"{POD_USER}:{POD_USER}", "Env": ["TMPDIR=/tmp"]},
        created_by="seaweedfs.py",
    )
    tag = hashlib.sha256(binary + repr(config).encode()).hexdigest()[:16]
    archive = ImageArchive(
        "seaweedfs", f"{REGISTRY}/seaweedfs:{tag}", cache_dir() / "seaweedfs" / f"{tag}.tar"
    )
    if not archive.path.is_file():
        log(f"seaweedfs: writing the image {archive.ref}")
        archive.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            layer = Path(work) / "layer.tar"
            with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo("weed")
                info.mode, info.size = 0o755, len(binary)
                tar.addfile(info, io.BytesIO(binary))
                for folder, mode in (("tmp", 0o1777), ("etc", 0o755)):
                    entry = tarfile.TarInfo(folder)
                    entry.type, entry.mode = tarfile.DIRTYPE, mode
                    tar.addfile(entry)
            write_docker_archive(archive.path, archive.ref, [layer], config)
    return archive


def store_objects(name: str, image: str, placement: dict[str, Any]) -> list[dict[str, Any]]:
    """The store as a pod (its data in an emptyDir), its identities' ConfigMap and a Service
    ``name`` on port 8333; ``placement``: the pod spec's nodeSelector and tolerations."""
    labels = {"app": name}
    command = server_command(Path("/weed"), POD_DATA, POD_PORTS, POD_CONFIG, bind="0.0.0.0")
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {POD_CONFIG.name: json.dumps(s3_config((ADMIN, READER)))},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                **placement,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": POD_USER,
                    "fsGroup": POD_USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "weed",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": command[:1],
                        "args": command[1:],
                        "ports": [{"containerPort": S3_PORT, "name": "s3"}],
                        "readinessProbe": {
                            "tcpSocket": {"port": S3_PORT},
                            "periodSeconds": 1,
                        },
                        "securityContext": restricted,
                        "volumeMounts": [
                            {"name": "srv", "mountPath": str(POD_DATA)},
                            {"name": "data", "mountPath": str(POD_DATA / "data")},
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "config", "mountPath": str(POD_CONFIG.parent)},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "srv", "emptyDir": {}},
                    {"name": "data", "emptyDir": {}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": name}},
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": S3_PORT, "targetPort": S3_PORT}]},
        },
    ]


def pod_store(service_ip: str, log: Path) -> S3Store:
    """The store of a pod, reached by the tests on its Service's cluster IP (the host is
    routed to Services, not straight to pods); ready once a bucket can be written."""
    store = S3Store(
        endpoint=f"http://{service_ip}:{S3_PORT}", port=S3_PORT, log=log, host=service_ip
    )
    _wait_ready(store, None)
    return store
