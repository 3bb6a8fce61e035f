"""The model pod's ``vigil-fetch`` init container, run by the real node's kubelet.

Each pod is the pod template the operator builds for a spec
(``desired_deployment``), pinned to the real node, with the sidecar left
out and busybox standing in for the model server (it only needs to read the
folder). The init container is the real one: Vigil's image, its security
context, its arguments, the Secret's keys as its environment. The servers
are real too, in the cluster: busybox ``httpd`` serving a ConfigMap's
archives, Python's ``http.server`` behind TLS with a certificate of a CA
made by ``openssl`` at test time, and SeaweedFS's S3 gateway with an admin that uploads and a
reader whose keys the fetcher gets. What the kubelet then writes in the
pod's status is read with the operator's own ``fetch_state``: nothing for a
fetched model, ``failed`` with ``URI: the fetcher's words`` for every
permanent error. Traffic goes only to this cluster's pod and Service
addresses.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kit.kube import Kube, fresh_namespace
from kit.waits import wait_for

from vigil.core.desired import (
    FETCH_CONTAINER,
    MODEL_VOLUME,
    Owner,
    RevisionInfo,
    desired_deployment,
)
from vigil.core.observed import FetchState, fetch_state
from vigil.core.spec import parse_spec
from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.images import ensure_images
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.devcluster.node import NODE_LABEL, NODE_NAME
from vigil.devcluster.node_images import busybox_image
from vigil.devcluster.seaweedfs import (
    READER,
    S3_PORT,
    pod_store,
    put_object,
    seaweedfs_image,
    store_objects,
)

KEY, VALUE = NODE_LABEL
PLACEMENT = {
    "nodeSelector": {KEY: VALUE},
    "tolerations": [{"key": KEY, "value": VALUE, "effect": "NoSchedule"}],
}
SERVER_USER = 10001
BUCKET = "models"
MODEL_KEY = "wine/1/model.tar.gz"
#: Larger than the folder's sizeLimit (``fetch.sizeLimit``) in the full-disk case.
BIG_KEY = "big/weights.bin"
CLASHING_PREFIX = "clash"
CLASHING_KEYS = (f"{CLASHING_PREFIX}/a", f"{CLASHING_PREFIX}/a/b")
BIG_SIZE = 4 * 1024 * 1024
#: What vigil-fetch leaves beside the model: the URI, digest, files and size it fetched.
MARKER = "/mnt/models/.vigil-fetch.json"


def archive(members: dict[str, bytes]) -> bytes:
    """A .tar.gz of ``members`` (name -> content), names kept as written."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def model_archive(model: TrainedModel) -> bytes:
    """What a team uploads: the MLServer folder ``wine/`` of the trained model."""
    return archive(
        {f"wine/{path.name}": path.read_bytes() for path in sorted(model.folder.iterdir())}
    )


@dataclass(frozen=True)
class Stores:
    """The servers of this module's namespace and what they hold."""

    cluster: ClusterClient
    namespace: str
    vigil_image: str
    busybox_image: str
    model: TrainedModel
    model_tar: bytes

    @property
    def kube(self) -> Kube:
        return Kube(self.cluster, self.namespace)

    @property
    def http(self) -> str:
        return f"http://web.{self.namespace}.svc/a"

    @property
    def https(self) -> str:
        return f"https://{TLS_HOST}.{self.namespace}.svc"

    @property
    def s3_endpoint(self) -> str:
        return f"http://seaweedfs.{self.namespace}.svc:{S3_PORT}"

    def pod(self, name: str) -> dict[str, Any]:
        found = self.kube.get("pod", name)
        assert found is not None, f"pod {name} not found"
        return found


def server_objects(
    name: str, container: dict[str, Any], volumes: list[dict[str, Any]], port: int, target: int
) -> list[dict[str, Any]]:
    """A restricted pod of one ``container`` on the real node and its Service ``name``."""
    hardened = {
        "imagePullPolicy": "Never",
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        **container,
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                **PLACEMENT,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": SERVER_USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": 1,
                "containers": [hardened],
                "volumes": volumes,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target}]},
        },
    ]


def web_objects(image: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
    """busybox httpd serving ``files`` (a ConfigMap's binaryData) under /a/, and its Service."""
    httpd = {
        "name": "httpd",
        "image": image,
        "command": ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"],
        "volumeMounts": [{"name": "artifacts", "mountPath": "/www/a"}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "artifacts"},
            "binaryData": {name: base64.b64encode(data).decode() for name, data in files.items()},
        },
        *server_objects(
            "web", httpd, [{"name": "artifacts", "configMap": {"name": "artifacts"}}], 80, 8080
        ),
    ]


TLS_HOST = "tls"
#: Python's own server behind TLS (the vigil image has Python, nothing more is needed).
TLS_SERVER = """
import functools, http.server, ssl
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/www")
server = http.server.ThreadingHTTPServer(("", 8443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def openssl(folder: Path, *args: str) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    except FileNotFoundError:
        pytest.fail("openssl is needed to make the https test's CA (apt-get install openssl)")


def make_ca(folder: Path, name: str) -> None:
    """``name.crt`` and ``name.key``: a CA of one day, as a team's private CA."""
    openssl(
        folder, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "1", "-subj", f"/CN=Vigil e2e {name}",
        "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def make_server_certificate(folder: Path, ca: str, host: str) -> None:
    """``tls.crt`` and ``tls.key`` for ``host``, signed by the CA ``ca``."""
    (folder / "tls.ext").write_text(
        f"subjectAltName=DNS:{host}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        folder, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={host}", "-keyout", "tls.key", "-out", "tls.csr",
    )  # fmt: skip
    openssl(
        folder, "x509", "-req", "-in", "tls.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "1", "-extfile", "tls.ext", "-out", "tls.crt",
    )  # fmt: skip


def tls_objects(image: str, folder: Path) -> list[dict[str, Any]]:
    """Python's https server with ``tls.crt``/``tls.key`` of ``folder`` serving the ConfigMap
    ``artifacts`` (web_objects'), its Service on 443, and the ConfigMaps ``ca`` (the CA that
    signed it) and ``wrong-ca`` (another), key ``ca.crt``."""
    secret = {
        name: base64.b64encode((folder / name).read_bytes()).decode()
        for name in ("tls.crt", "tls.key")
    }
    https = {
        "name": "https",
        "image": image,
        "command": ["python", "-c", TLS_SERVER],
        "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
        "volumeMounts": [
            {"name": "artifacts", "mountPath": "/www"},
            {"name": "tls", "mountPath": "/tls", "readOnly": True},
        ],
    }
    volumes = [
        {"name": "artifacts", "configMap": {"name": "artifacts"}},
        {"name": "tls", "secret": {"secretName": "tls"}},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls"},
            "type": "kubernetes.io/tls",
            "data": secret,
        },
        *(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": {"ca.crt": (folder / f"{ca}.crt").read_text()},
            }
            for name, ca in (("ca", "ca"), ("wrong-ca", "other-ca"))
        ),
        *server_objects(TLS_HOST, https, volumes, 443, 8443),
    ]


def apply_tls_server(kube: Kube, image: str, folder: Path) -> None:
    """The CAs ``ca`` and ``other-ca`` made in ``folder``, a certificate of ``ca`` for the
    https server's Service name in ``kube``'s namespace, and tls_objects' server applied."""
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_server_certificate(folder, "ca", f"{TLS_HOST}.{kube.namespace}.svc")
    kube.apply(*tls_objects(image, folder))


def down_service() -> dict[str, Any]:
    """A Service whose pods are all gone: its address refuses every connection."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "down"},
        "spec": {"selector": {"app": "down"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


@pytest.fixture(scope="module")
def stores(
    cluster: ClusterClient, real_node: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stores]:
    with fresh_namespace(cluster, "artifacts") as namespace:
        kube = Kube(cluster, namespace)
        vigil = ensure_images(["vigil"])["vigil"]
        busybox, weed = busybox_image(), seaweedfs_image()
        real_node.node().load_images([vigil, busybox, weed])
        model = train_wine(tmp_path_factory.mktemp("artifacts") / "wine", version="1")
        model_tar = model_archive(model)
        files = {
            "model.tar.gz": model_tar,
            "escape.tar.gz": archive({"wine/model-settings.json": b"{}", "../../up": b"x"}),
            # gzip's length and CRC cut off: tarfile alone unpacks all of it "complete".
            "truncated.tar.gz": model_tar[:-8],
        }
        kube.apply(*web_objects(busybox.ref, files))
        apply_tls_server(kube, vigil.ref, tmp_path_factory.mktemp("tls"))
        kube.apply(down_service())
        kube.apply(*store_objects("seaweedfs", weed.ref, PLACEMENT))
        cluster.kubectl(
            "wait", "pod", "--all", "-n", namespace, "--for=condition=Ready", "--timeout=120s"
        )
        service = cluster.get_json("service", "seaweedfs", "-n", namespace)
        ip = service["spec"]["clusterIP"]
        store = pod_store(ip, Path(f"kubectl logs -n {namespace} seaweedfs"))
        put_object(store, BUCKET, MODEL_KEY, model_tar)
        put_object(store, BUCKET, BIG_KEY, secrets.token_bytes(BIG_SIZE))
        for key in CLASHING_KEYS:  # a store holds both; a folder cannot
            put_object(store, BUCKET, key, b"x")
        for name, identity in (("reader", READER), ("wrong-keys", None)):
            cluster.kubectl(
                "create", "secret", "generic", name, "-n", namespace,
                f"--from-literal=AWS_ACCESS_KEY_ID={READER.access_key}",
                f"--from-literal=AWS_SECRET_ACCESS_KEY="
                f"{identity.secret_key if identity else 'not-the-secret-key'}",
            )  # fmt: skip
        yield Stores(cluster, namespace, vigil.ref, busybox.ref, model, model_tar)


def model_pod(stores: Stores, name: str, model: dict[str, Any]) -> dict[str, Any]:
    """The pod the operator would run for ``spec.model`` (its template, on the real node),
    the sidecar left out and busybox as the server."""
    spec = parse_spec(
        name,
        {"model": {"name": "wine", "version": "1", **model}, "server": {"image": "server"}},
    )
    deployment = desired_deployment(
        Owner(name, stores.namespace, "0"),
        spec,
        RevisionInfo("r1", "i1", "stable"),
        sidecar_image=stores.vigil_image,
        replicas=1,
    )
    template = copy.deepcopy(deployment["spec"]["template"])
    pod_spec = template["spec"]
    server = next(c for c in pod_spec["containers"] if c["name"] == "server")
    server.update(
        {
            "image": stores.busybox_image,
            "imagePullPolicy": "Never",
            "command": ["sleep", "3600"],
            "securityContext": {
                **server.get("securityContext", {}),
                "runAsUser": SERVER_USER,
            },
        }
    )
    server.pop("lifecycle", None)
    pod_spec["containers"] = [server]
    mounted = {
        mount["name"]
        for container in [*pod_spec.get("initContainers", ()), server]
        for mount in container.get("volumeMounts", ())
    }
    pod_spec["volumes"] = [v for v in pod_spec["volumes"] if v["name"] in mounted]
    pod_spec.update(copy.deepcopy(PLACEMENT))
    pod_spec["terminationGracePeriodSeconds"] = 1
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": pod_spec,
    }


def run(stores: Stores, model: dict[str, Any]) -> str:
    name = f"fetch-{secrets.token_hex(3)}"
    pod = model_pod(stores, name, model)
    assert pod["spec"]["initContainers"][0]["name"] == FETCH_CONTAINER
    stores.kube.apply(pod)
    return name


def fetched(stores: Stores, name: str) -> str:
    """Wait until the server container runs (the fetch done); returns the marker it left."""

    def running() -> bool:
        pod = stores.pod(name)
        state = fetch_state(pod)
        assert state is None or state.kind == "fetching", state
        statuses = pod["status"].get("containerStatuses") or ()
        return any("running" in (c.get("state") or {}) for c in statuses)

    wait_for(running, timeout=120, what=f"pod {name}'s server to start after its fetch")
    assert fetch_state(stores.pod(name)) is None
    marker = stores.kube.run("exec", name, "-c", "server", "--", "cat", MARKER)
    return str(marker.stdout)


def failure(stores: Stores, name: str, kind: str = "failed", timeout: float = 120) -> FetchState:
    def failed() -> FetchState | None:
        state = fetch_state(stores.pod(name))
        return state if state is not None and state.kind == kind else None

    def seen() -> str:
        # Where it stood: its fetch's state, its phase and init container (not started?), and
        # the fetch's last words (retrying a store that answers slowly?).
        pod = stores.pod(name)
        inits = [c.get("state") for c in pod["status"].get("initContainerStatuses") or ()]
        phase = pod["status"].get("phase")
        logs = stores.kube.run("logs", name, "-c", FETCH_CONTAINER, "--tail=5", check=False)
        return (
            f"pod {name}'s fetch in state {kind}: {fetch_state(pod)}, {phase}, {inits}; "
            f"its last lines: {(logs.stdout + logs.stderr).strip()!r}"
        )

    return wait_for(failed, timeout=timeout, what=seen)


def served_settings(stores: Stores, name: str) -> str:
    return str(
        stores.kube.run(
            "exec", name, "-c", "server", "--", "cat", "/mnt/models/wine/model-settings.json"
        ).stdout
    )


# -- fetched ---------------------------------------------------------------------------------


def test_an_http_archive_is_unpacked_verified_and_mounted_read_only(stores: Stores) -> None:
    digest = hashlib.sha256(stores.model_tar).hexdigest()
    uri = f"{stores.http}/model.tar.gz"
    name = run(stores, {"uri": uri, "sha256": digest})
    marker = json.loads(fetched(stores, name))
    assert (marker["uri"], marker["sha256"]) == (uri, digest), marker
    settings = (stores.model.folder / "model-settings.json").read_text()
    assert served_settings(stores, name) == settings
    write = stores.kube.run(
        "exec", name, "-c", "server", "--", "touch", "/mnt/models/x", check=False
    )
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    pod = stores.pod(name)
    assert pod["spec"]["nodeName"] == NODE_NAME
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0


def test_an_s3_object_is_fetched_with_the_readers_keys(stores: Stores) -> None:
    uri = f"s3://{BUCKET}/{MODEL_KEY}"
    digest = hashlib.sha256(stores.model_tar).hexdigest()
    storage = {"secretRef": {"name": "reader"}, "endpoint": stores.s3_endpoint}
    name = run(stores, {"uri": uri, "sha256": digest, "storage": storage})
    marker = json.loads(fetched(stores, name))
    assert (marker["uri"], marker["sha256"]) == (uri, digest), marker
    settings = (stores.model.folder / "model-settings.json").read_text()
    assert served_settings(stores, name) == settings
    env = stores.pod(name)["spec"]["initContainers"][0]["env"]
    assert {"name": "AWS_ENDPOINT_URL_S3", "value": stores.s3_endpoint} in env


def test_an_https_archive_is_fetched_trusting_the_private_ca(stores: Stores) -> None:
    uri = f"{stores.https}/model.tar.gz"
    storage = {"caConfigMapRef": {"name": "ca", "key": "ca.crt"}}
    name = run(stores, {"uri": uri, "storage": storage})
    marker = json.loads(fetched(stores, name))
    assert marker["uri"] == uri, marker
    settings = (stores.model.folder / "model-settings.json").read_text()
    assert served_settings(stores, name) == settings


# -- failures: the fetcher's words in the pod's status, as the operator reads them ------------


def test_a_certificate_of_another_ca_is_refused(stores: Stores) -> None:
    uri = f"{stores.https}/model.tar.gz"
    storage = {"caConfigMapRef": {"name": "wrong-ca", "key": "ca.crt"}}
    state = failure(stores, run(stores, {"uri": uri, "storage": storage}))
    assert state.words == (
        f"{uri}: TLS certificate verification failed: unable to get local issuer certificate"
    ), state


def test_a_missing_secret_fails_naming_it(stores: Stores) -> None:
    uri = f"s3://{BUCKET}/{MODEL_KEY}"
    storage = {"secretRef": {"name": "no-such-keys"}, "endpoint": stores.s3_endpoint}
    state = failure(stores, run(stores, {"uri": uri, "storage": storage}))
    kubelet = 'CreateContainerConfigError: secret "no-such-keys" not found'
    assert state.words == f"spec.model.storage.secretRef: {kubelet}", state


def test_a_refusing_host_is_retried_then_left_to_the_kubelet(stores: Stores) -> None:
    # Transient: vigil-fetch retries (back-off 1 to 16 s), exits 75, the kubelet restarts it.
    # kube-proxy rejects connections to a Service without endpoints.
    host = f"down.{stores.namespace}.svc"
    uri = f"http://{host}/model.tar.gz"
    state = failure(stores, run(stores, {"uri": uri}), kind="retrying")
    refused = f"cannot connect to {host}: connection refused"
    assert state.words == f"{uri}: {refused} (gave up after 6 attempts in a row)", state


def test_a_model_larger_than_its_folder_gets_the_pod_evicted(stores: Stores) -> None:
    # A full disk as the node enforces it: fetch.sizeLimit below the artifact's size, so the
    # kubelet evicts the pod (vigil-fetch sees the node's free space, not the limit).
    uri = f"s3://{BUCKET}/{BIG_KEY}"
    storage = {"secretRef": {"name": "reader"}, "endpoint": stores.s3_endpoint}
    model = {"uri": uri, "storage": storage, "fetch": {"sizeLimit": "1Mi"}}
    state = failure(stores, run(stores, model), timeout=240)
    assert state.words.startswith("the pod was evicted: "), state
    assert f'"{MODEL_VOLUME}"' in state.words and '"1Mi"' in state.words, state


def test_wrong_keys_fail_with_the_stores_refusal(stores: Stores) -> None:
    uri = f"s3://{BUCKET}/{MODEL_KEY}"
    storage = {"secretRef": {"name": "wrong-keys"}, "endpoint": stores.s3_endpoint}
    state = failure(stores, run(stores, {"uri": uri, "storage": storage}))
    assert state.words.startswith(f"{uri}: 403 "), state
    assert "SignatureDoesNotMatch" in state.words, state


def test_a_digest_mismatch_fails_naming_both_digests(stores: Stores) -> None:
    uri = f"{stores.http}/model.tar.gz"
    actual = hashlib.sha256(stores.model_tar).hexdigest()
    state = failure(stores, run(stores, {"uri": uri, "sha256": "0" * 64}))
    assert state.words == f"{uri}: sha256 mismatch: expected {'0' * 64}, got {actual}", state


def test_a_missing_file_fails_with_404(stores: Stores) -> None:
    uri = f"{stores.http}/missing.tar.gz"
    state = failure(stores, run(stores, {"uri": uri}))
    assert state.words.startswith(f"{uri}: 404 "), state


def test_an_archive_cut_short_is_not_served(stores: Stores) -> None:
    uri = f"{stores.http}/truncated.tar.gz"
    state = failure(stores, run(stores, {"uri": uri}))
    assert state.words.startswith(f"{uri}: truncated.tar.gz is not a readable"), state


def test_objects_whose_keys_clash_as_paths_fail_naming_the_key(stores: Stores) -> None:
    uri = f"s3://{BUCKET}/{CLASHING_PREFIX}"
    storage = {"secretRef": {"name": "reader"}, "endpoint": stores.s3_endpoint}
    state = failure(stores, run(stores, {"uri": uri, "storage": storage}))
    assert state.words.startswith(f"{uri}: object {CLASHING_KEYS[1]}: cannot write "), state


def test_an_archive_escaping_its_folder_is_refused(stores: Stores) -> None:
    uri = f"{stores.http}/escape.tar.gz"
    state = failure(stores, run(stores, {"uri": uri}))
    assert state.words == f"{uri}: archive member '../../up' escapes the destination folder"


def test_the_init_container_is_the_only_one_given_the_secret(stores: Stores) -> None:
    storage = {"secretRef": {"name": "reader"}, "endpoint": stores.s3_endpoint}
    pod = model_pod(stores, "x", {"uri": f"s3://{BUCKET}/{MODEL_KEY}", "storage": storage})
    (server,) = pod["spec"]["containers"]
    assert "reader" not in json.dumps(server)
    assert MODEL_VOLUME in {m["name"] for m in server["volumeMounts"]}
