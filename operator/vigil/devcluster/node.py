"""The local cluster's real node: containerd, kubelet, kube-proxy and CoreDNS.

They run as processes of the cluster (logs in ``logs/``, state in ``node/``)
inside the node's network namespace (see ``network.py``)::

    node/containerd/   config.toml, root/, state/, runc/, containerd.sock
    node/kubelet/      config.yaml, kubeconfig, root/ (volumes), pod-logs/
    node/cni/          net.d/ (the bridge network), ipam/ (its leases)
    node/kube-proxy/   config.yaml, kubeconfig
    node/coredns/      Corefile, kubeconfig

The node's containerd is an instance of its own (own socket, root, state and
runc root) whose sandbox image is the locally built pause image; its pods'
cgroups live under ``/vigil-<octet>`` in every hierarchy. Kubelet
authenticates with a client certificate (``system:node:real-node``, held to
its own objects by the Node authorizer and NodeRestriction), serves with a
certificate of the cluster's CA, and asks the API server (webhook) who may
read logs or exec; the API server calls it with a client certificate of its
own. ``teardown`` removes every process, mount, cgroup, link and file the
node made, on the machine as well as in the state folder: the network objects,
cgroups and CNI cache files are named by the address octet, which another
cluster could have (``LocalCluster.up`` refuses that), so only those this node
recorded as made (``node/created.json``) are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from vigil.common import kube_yaml
from vigil.devcluster.common import (
    ClusterError,
    Recorded,
    exclusive,
    pid_alive,
    write_kubeconfig,
)
from vigil.devcluster.images import ImageArchive, ImageError, ensure_images
from vigil.devcluster.network import NetworkError, NodeNetwork
from vigil.devcluster.packages import NODE_PACKAGES, PackageError, ensure_packages

NODE_NAME = "real-node"
#: Pods that must run for real select the real node with this label. It is also
#: tainted with it, so pods that do not ask for it (the scale benchmarks' and other
#: kwok pods that run nothing) land on kwok nodes.
NODE_LABEL = ("vigil.dev/node", "real")
NODE_COMPONENTS = ("kube-apiserver-forward", "containerd", "kubelet", "kube-proxy", "coredns")
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
COREDNS_READY_PORT = 8181
COREDNS_HEALTH_PORT = 8080
#: kubelet sets these machine-wide at start (no setting stops it short of
#: refusing to start); the values before the first real node are put back
#: when the last one goes.
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
TUNABLES_RECORD = Path("/run/vigil/kernel-tunables.json")
CONTAINERD_SHIM_SOCKETS = Path("/run/containerd/s")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni/results")
CNI_PLUGINS = Path("/usr/lib/cni")
#: What the node made on the machine under names another cluster of its octet would
#: share ("network": namespace, link, routes, CNI cache; "cgroups"): teardown removes only these.
CREATED_RECORD = "created.json"
#: A unix socket path is at most 107 bytes; containerd adds ".ttrpc".
MAX_SOCKET_PATH = 100
GIB = 1024**3
#: The kubelet evicts every pod (DiskPressure) below this share free of the node's file
#: system (its size as statvfs reports it, which may exceed what the disk holds).
EVICTION_FREE_PERCENT = 2
#: Free space the node needs above that before it starts: its images and pods.
START_HEADROOM_BYTES = 3 * GIB
#: ... and after images are imported: the pods' writable layers and logs.
RUN_HEADROOM_BYTES = GIB

NOT_ROOT = (
    "the local cluster's real node needs root (containerd, network namespaces, cgroups); "
    "run as root, or use a kind cluster instead: make kind-up (needs Docker and kind)"
)


class NodeCluster(Protocol):
    """What the node needs of its cluster (``LocalCluster``): folders, processes, PKI."""

    state_dir: Path
    log: Callable[[str], None]

    @property
    def ports(self) -> Any: ...  # .etcd_client (the base) and .apiserver
    @property
    def logs_dir(self) -> Path: ...
    @property
    def pki_dir(self) -> Path: ...
    @property
    def bin_dir(self) -> Path: ...
    def kubectl(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]: ...
    def issue_certificate(
        self, name: str, subject: str, usage: str, alt_names: str | None = None
    ) -> None: ...
    def tokens(self) -> dict[str, str]: ...
    def _ca_data(self) -> str: ...
    def _start(self, name: str, args: list[str]) -> int: ...
    def _wait(
        self, name: str, pid: int, ready: Callable[[], bool], timeout: float = 60
    ) -> None: ...
    def _stop(self, name: str, process: Recorded) -> None: ...


class NodeError(ClusterError):
    """The real node cannot start here; one line says what and what to do."""


def preflight() -> None:
    """Root, the Debian packages (installed if missing) and the kernel features."""
    if os.geteuid() != 0:
        raise NodeError(NOT_ROOT)
    try:
        ensure_packages(NODE_PACKAGES)
    except PackageError as error:
        raise NodeError(str(error)) from error
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise NodeError(
            "the kernel has no overlay file system (containerd's snapshotter needs it): "
            "modprobe overlay, or use a kernel with CONFIG_OVERLAY_FS"
        )
    if not Path("/proc/sys/net/bridge").is_dir():
        raise NodeError(
            "the kernel's br_netfilter is not loaded (Services between pods of the node need "
            "it): modprobe br_netfilter"
        )
    for hierarchy in ("memory", "cpu", "pids"):
        if not any(_cgroup_mounts(hierarchy)):
            raise NodeError(
                f"no {hierarchy} cgroup is mounted (kubelet needs it): mount the cgroup "
                "hierarchies (cgroup v1 or v2) and retry"
            )


def check_disk(folder: Path, headroom: int) -> None:
    """Enough free space under ``folder`` that the kubelet will run pods: below its eviction
    threshold the node turns DiskPressure and no pod starts, with nothing else to say why."""
    stat = os.statvfs(folder)
    size, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    floor = size * EVICTION_FREE_PERCENT / 100
    if free < floor + headroom:
        raise NodeError(
            f"{free / GIB:.1f} GiB free on the file system of {folder}: the real node's kubelet "
            f"stops every pod below {floor / GIB:.1f} GiB ({EVICTION_FREE_PERCENT} % of "
            f"{size / GIB:.0f} GiB) and the node needs {headroom / GIB:.0f} GiB above that: "
            "free some space (old clones, caches) and retry"
        )


def _cgroup_mounts(controller: str | None = None) -> Iterator[Path]:
    """Mount points of cgroup hierarchies (v1 with ``controller``; all when None)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount_point, kind, options, *_ = line.split()
        if kind not in ("cgroup", "cgroup2"):
            continue
        if controller is None or controller in options.split(",") or kind == "cgroup2":
            yield Path(mount_point)


def _give_cpuset(cgroup: Path) -> None:
    """A new cgroup of a v1 cpuset hierarchy has no CPUs nor memory nodes, and no task may
    join it: it gets its parent's. On cgroup v2 (``cgroup.controllers`` in every cgroup)
    the root has no ``cpuset.cpus`` and a child's empty value inherits its parent's."""
    if (cgroup.parent / "cgroup.controllers").exists():
        return
    for name in ("cpuset.cpus", "cpuset.mems"):
        own, parents = cgroup / name, cgroup.parent / name
        if own.exists() and parents.exists() and not own.read_text().strip():
            own.write_text(parents.read_text())


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _get(url: str, context: object | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # type: ignore[arg-type]
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class RealNode:
    """Start, check and remove the real node of one ``LocalCluster``."""

    def __init__(self, cluster: NodeCluster) -> None:
        self.cluster = cluster
        self.network = NodeNetwork.for_port_base(cluster.ports.etcd_client)
        self.dir = cluster.state_dir / "node"
        self.cgroup_root = f"/vigil-{self.network.octet}"

    # -- paths --------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    # -- start --------------------------------------------------------------------

    def up(self, pids: dict[str, int]) -> None:
        """Start every node component (``pids`` is filled as they start)."""
        started = time.monotonic()
        cluster = self.cluster
        preflight()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._record_created()  # nothing yet: the record's presence is what teardown reads
        check_disk(self.dir, START_HEADROOM_BYTES)
        if len(str(self.containerd_socket)) > MAX_SOCKET_PATH:
            raise NodeError(
                f"the node's containerd socket path {self.containerd_socket} is longer than "
                f"{MAX_SOCKET_PATH} bytes (a unix socket limit): use a shorter state folder "
                "(VIGIL_CLUSTER_DIR)"
            )
        try:
            pause = ensure_images(["pause"], cluster.log)["pause"]
        except ImageError as error:
            raise NodeError(f"cannot build the pause image: {error}") from error
        self._record_kernel_tunables()
        try:
            # Recorded once known to be free (not another cluster's) and before it is made:
            # a kill midway leaves it to this node's teardown.
            self.network.check_free()
            self._record_created("network")
            self.network.create()
        except NetworkError as error:
            raise NodeError(str(error)) from error
        self._check_iptables()
        self._record_created("cgroups")
        self._make_cgroup_root()
        self._write_configs(pause)
        pids["kube-apiserver-forward"] = cluster._start(
            "kube-apiserver-forward", self._forward_args()
        )
        # Bound before anything dials it: a forwarder that cannot bind (an orphan holds
        # the address) fails here, with its log, not as kubelet's timeouts later.
        cluster._wait(
            "kube-apiserver-forward",
            pids["kube-apiserver-forward"],
            lambda: _accepts(self.network.host_ip, cluster.ports.apiserver),
        )
        inside = self.network.nsenter()
        pids["containerd"] = cluster._start(
            "containerd", [*inside, "containerd", f"--config={self.dir / 'containerd/config.toml'}"]
        )
        cluster._wait(
            "containerd",
            pids["containerd"],
            lambda: self.ctr("version", check=False).returncode == 0,
        )
        self.load_images([pause])
        self._apply_node_objects()
        pids["kubelet"] = cluster._start("kubelet", [*inside, *self._kubelet_args()])
        healthz = f"http://{self.network.node_ip}:{KUBELET_HEALTHZ_PORT}/healthz"
        cluster._wait("kubelet", pids["kubelet"], lambda: _get(healthz), timeout=90)
        pids["kube-proxy"] = cluster._start(
            "kube-proxy",
            [
                *inside,
                str(cluster.bin_dir / "kube-proxy"),
                f"--config={self.dir / 'kube-proxy/config.yaml'}",
                "--v=1",
            ],
        )
        pids["coredns"] = cluster._start(
            "coredns",
            [*inside, str(cluster.bin_dir / "coredns"), f"-conf={self.dir / 'coredns/Corefile'}"],
        )
        cluster._wait(
            "kube-proxy",
            pids["kube-proxy"],
            lambda: _get(f"http://{self.network.node_ip}:{KUBE_PROXY_HEALTHZ_PORT}/healthz"),
        )
        cluster._wait(
            "coredns",
            pids["coredns"],
            lambda: _get(f"http://{self.network.node_ip}:{COREDNS_READY_PORT}/ready"),
        )
        self._wait_node_ready(pids["kubelet"])
        cluster.log(
            f"devcluster: real node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s "
            f"(pods {self.network.pod_range}, Services {self.network.service_range})"
        )

    def _forward_args(self) -> list[str]:
        """The API server's forwarder; its last argument names the state folder, so a
        forwarder orphaned by a kill is found and stopped by the next ``down``."""
        return [
            sys.executable,
            "-m",
            "vigil.devcluster.forward",
            self.network.host_ip,
            str(self.cluster.ports.apiserver),
            "127.0.0.1",
            str(self.cluster.state_dir.resolve()),
        ]

    def _record_created(self, made: str | None = None) -> None:
        """Add ``made`` to ``node/created.json`` (written aside and renamed: never half)."""
        record = self.dir / CREATED_RECORD
        try:
            done = set(json.loads(record.read_text()))
        except (OSError, ValueError):
            done = set()
        if made is not None:
            done.add(made)
        partial = record.with_name(f".{CREATED_RECORD}.{os.getpid()}")
        partial.write_text(json.dumps(sorted(done)))
        partial.replace(record)

    def _created(self, legacy: bool) -> set[str]:
        """What the node recorded as made. No record: nothing, unless the folder is a
        ``legacy`` node's (a checkout that kept no record made all of it)."""
        try:
            return set(json.loads((self.dir / CREATED_RECORD).read_text()))
        except (OSError, ValueError):
            return {"network", "cgroups"} if legacy and self.dir.is_dir() else set()

    def load_images(self, archives: list[ImageArchive]) -> None:
        """Import image archives into the node's containerd (those it lacks), one importer
        at a time: containerd refuses a second ingest of the same content ("ref locked")."""
        with exclusive(self.dir / "images.lock"):
            present = set(self.ctr("images", "list", "--quiet").stdout.split())
            for archive in archives:
                if archive.ref not in present:
                    self.ctr("images", "import", str(archive.path))
        check_disk(self.dir, RUN_HEADROOM_BYTES)

    def healthy(self) -> bool:
        return _get(f"http://{self.network.node_ip}:{KUBELET_HEALTHZ_PORT}/healthz")

    def _check_iptables(self) -> None:
        result = subprocess.run(
            [*self.network.nsenter(), "iptables", "-t", "nat", "-S"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            said = result.stderr.strip().splitlines()
            raise NodeError(
                "iptables cannot use the nat table in the node's namespace (kube-proxy needs "
                f"it): {said[-1] if said else result.returncode}; the kernel needs "
                "nf_tables/ip_tables with NAT (modprobe iptable_nat)"
            )

    def _make_cgroup_root(self) -> None:
        """kubelet wants its cgroup root to exist in every hierarchy; cpuset needs CPUs."""
        for mount in _cgroup_mounts():
            path = mount / self.cgroup_root.lstrip("/")
            try:
                path.mkdir(exist_ok=True)
                _give_cpuset(path)
            except OSError as error:
                raise NodeError(
                    f"cannot make the node's cgroup {path} (kubelet's cgroup root): {error}"
                ) from error

    def _wait_node_ready(self, kubelet_pid: int) -> None:
        cluster = self.cluster
        log_path = cluster.logs_dir / "kubelet.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            result = cluster.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                check=False,
            )
            if result.stdout.strip() == "True":
                return
            if not pid_alive(kubelet_pid):
                raise NodeError(f"kubelet exited before its node was Ready; see {log_path}")
            time.sleep(0.5)
        raise NodeError(f"node {NODE_NAME} not Ready within 120s; see {log_path}")

    # -- configuration ------------------------------------------------------------

    def _write_configs(self, pause: ImageArchive) -> None:
        cluster, net = self.cluster, self.network
        pki = cluster.pki_dir
        for sub in ("containerd", "kubelet", "cni/net.d", "kube-proxy", "coredns"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        server = f"https://{net.host_ip}:{cluster.ports.apiserver}"
        cluster.issue_certificate(
            "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth"
        )
        cluster.issue_certificate(
            "kubelet-serving",
            f"/CN={NODE_NAME}",
            "serverAuth",
            f"IP:{net.node_ip},DNS:{NODE_NAME}",
        )
        write_kubeconfig(
            self.dir / "kubelet/kubeconfig",
            server,
            cluster._ca_data(),
            "",
            f"system:node:{NODE_NAME}",
            client_certificate=(pki / "kubelet-client.crt", pki / "kubelet-client.key"),
        )
        tokens = cluster.tokens()
        for name, user in (("kube-proxy", "system:kube-proxy"), ("coredns", "system:coredns")):
            write_kubeconfig(
                self.dir / name / "kubeconfig", server, cluster._ca_data(), tokens[name], user
            )
        containerd = self.dir / "containerd"
        (containerd / "config.toml").write_text(
            CONTAINERD_CONFIG.format(
                root=containerd / "root",
                state=containerd / "state",
                socket=self.containerd_socket,
                runc_root=containerd / "runc",
                pause=pause.ref,
                cni_bin=CNI_PLUGINS,
                cni_conf=self.dir / "cni/net.d",
            )
        )
        (self.dir / "cni/net.d/10-vigil.conflist").write_text(json.dumps(self._cni(), indent=2))
        (self.dir / "kubelet/config.yaml").write_text(kube_yaml.dump(self._kubelet_config()))
        (self.dir / "kube-proxy/config.yaml").write_text(kube_yaml.dump(self._proxy_config()))
        (self.dir / "coredns/Corefile").write_text(
            COREFILE.format(
                ip=net.node_ip,
                health=COREDNS_HEALTH_PORT,
                ready=COREDNS_READY_PORT,
                kubeconfig=self.dir / "coredns/kubeconfig",
            )
        )

    def _cni(self) -> dict[str, object]:
        net = self.network
        return {
            "cniVersion": "0.4.0",
            "name": net.cni_network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": net.bridge,
                    # No gateway and no masquerading: pods get no default route,
                    # only one to the Service range (kube-proxy's DNAT happens in
                    # the node's namespace, so that is all they need).
                    "isGateway": False,
                    "isDefaultGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": net.pod_range, "gateway": net.node_ip}]],
                        "routes": [{"dst": net.service_range, "gw": net.node_ip}],
                        "dataDir": str(self.dir / "cni/ipam"),
                    },
                }
            ],
        }

    def _kubelet_config(self) -> dict[str, object]:
        cluster, net = self.cluster, self.network
        pki = cluster.pki_dir
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": net.node_ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": net.node_ip,
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True, "cacheTTL": "30s"},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "cgroupsPerQOS": True,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [net.dns_service_ip],
            "clusterDomain": "cluster.local",
            # Not the machine's resolv.conf: its servers are not for pods.
            "resolvConf": "",
            "podLogsDir": str(self.dir / "kubelet/pod-logs"),
            "registerWithTaints": [
                {"key": NODE_LABEL[0], "value": NODE_LABEL[1], "effect": "NoSchedule"}
            ],
            "failSwapOn": False,
            # Images come from archives, not a registry: none may be collected.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": f"{EVICTION_FREE_PERCENT}%",
                "imagefs.available": f"{EVICTION_FREE_PERCENT}%",
                "nodefs.inodesFree": "2%",
            },
            "serializeImagePulls": False,
            # ConfigMap volumes (the sidecar's run-time shadow settings) are refreshed on the
            # periodic pod sync: 1m by default plus up to half again, a minute per shadow step.
            "syncFrequency": "10s",
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "protectKernelDefaults": False,
            "maxPods": 110,
        }

    def _kubelet_args(self) -> list[str]:
        return [
            str(self.cluster.bin_dir / "kubelet"),
            f"--config={self.dir / 'kubelet/config.yaml'}",
            f"--kubeconfig={self.dir / 'kubelet/kubeconfig'}",
            f"--root-dir={self.dir / 'kubelet/root'}",
            f"--cert-dir={self.dir / 'kubelet/pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.network.node_ip}",
            f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}",
            "--v=1",
        ]

    def _proxy_config(self) -> dict[str, object]:
        net = self.network
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.dir / "kube-proxy/kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": net.pod_range,
            "healthzBindAddress": f"{net.node_ip}:{KUBE_PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": "127.0.0.1:10249",
            # conntrack's table size is machine-wide: leave it (0 = do not set).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        }

    def _apply_node_objects(self) -> None:
        """RBAC for the API server's calls to kubelet and for CoreDNS; the DNS Service."""
        net = self.network
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=NODE_OBJECTS.format(dns_ip=net.dns_service_ip, node_ip=net.node_ip),
        )

    # -- tear down ----------------------------------------------------------------

    def teardown(self, processes: Mapping[str, Recorded], legacy: bool = False) -> None:
        """Stop the node and remove all it made; safe to run on a half-started node, and
        on one that never got to make its network (another cluster's, of the same octet,
        stays untouched). ``legacy``: the state predates the record of what was made."""
        cluster = self.cluster
        created = self._created(legacy)
        for name in ("coredns", "kube-proxy", "kubelet"):
            if name in processes:
                cluster._stop(name, processes[name])
        if "cgroups" in created:
            self._kill_containers()
        for name in ("containerd", "kube-apiserver-forward"):
            if name in processes:
                cluster._stop(name, processes[name])
        shim_sockets = self._shim_sockets()
        for shim in self._shim_pids():
            cluster._stop(f"containerd-shim (pid {shim.pid})", shim)
        self._unmount()
        if "network" in created:
            self.network.delete()
        if "cgroups" in created:
            self._remove_cgroups()
        for path in shim_sockets:
            path.unlink(missing_ok=True)
        self._remove_machine_files(cni_cache="network" in created)
        self._restore_kernel_tunables()

    def _cgroup_dirs(self) -> list[Path]:
        """Every cgroup under the node's root, deepest first."""
        found: list[Path] = []
        for mount in _cgroup_mounts():
            root = mount / self.cgroup_root.lstrip("/")
            # Cgroups vanish while listed (the runtime removes an exited container's):
            # os.walk skips them, where rglob raises FileNotFoundError mid-teardown.
            for folder, children, _ in os.walk(root):
                found.extend(Path(folder) / child for child in children)
            if root.is_dir():
                found.append(root)
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def container_pids(self) -> set[int]:
        pids: set[int] = set()
        for path in self._cgroup_dirs():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return pids

    def _kill_containers(self) -> None:
        """SIGKILL every process in the node's cgroups (pods' containers and sandboxes)."""
        deadline = time.monotonic() + 15
        while (pids := self.container_pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _shim_pids(self) -> list[Recorded]:
        """containerd's shims (one per pod) outlive it: those started by ours."""
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                if b"containerd-shim" in cmdline[0] and str(self.containerd_socket).encode() in (
                    cmdline
                ):
                    found.append(Recorded.now(int(entry.name), str(self.containerd_socket)))
        return found

    def _shim_sockets(self) -> list[Path]:
        """The sockets containerd's shims made outside the state folder (one per pod)."""
        sockets = []
        for address in (self.dir / "containerd/state").glob(
            "io.containerd.runtime.v2.task/*/*/address"
        ):
            with contextlib.suppress(OSError):
                sockets.append(Path(address.read_text().strip().removeprefix("unix://")))
        return sockets

    def _mounts(self) -> list[str]:
        """Mount points under the state folder, deepest first."""
        marker = str(self.cluster.state_dir.resolve()) + "/"
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(marker):
                points.append(point)
        return sorted(points, key=lambda p: p.count("/"), reverse=True)

    def _unmount(self) -> None:
        for _ in range(3):
            points = self._mounts()
            if not points:
                return
            for point in points:
                if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", point], capture_output=True)

    def _remove_cgroups(self) -> None:
        for path in self._cgroup_dirs():
            deadline = time.monotonic() + 5
            while path.exists():
                try:
                    path.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        self.cluster.log(f"devcluster: cannot remove cgroup {path}")
                        break
                    time.sleep(0.1)

    def _remove_machine_files(self, cni_cache: bool = True) -> None:
        """kubelet's log links and libcni's cache: the node's files outside its folder (the
        cache is named by the octet: removed only with the network this node made)."""
        marker = str(self.cluster.state_dir.resolve()) + "/"
        if CONTAINER_LOG_LINKS.is_dir():
            for link in CONTAINER_LOG_LINKS.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(marker):
                        link.unlink()
        if cni_cache:
            for cached in CNI_CACHE.glob(f"{self.network.cni_network}-*"):
                cached.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What of the node is still on the machine (empty once it is down)."""
        found = [*self.network.leftovers()]
        found += [f"mount {point}" for point in self._mounts()]
        found += [f"cgroup {path}" for path in self._cgroup_dirs()]
        found += [f"container process {pid}" for pid in self.container_pids()]
        found += [f"cni cache {p}" for p in CNI_CACHE.glob(f"{self.network.cni_network}-*")]
        return found

    # -- kernel tunables --------------------------------------------------------------

    def _record_kernel_tunables(self) -> None:
        if TUNABLES_RECORD.exists():
            return  # another real node already changed them: keep the first record
        values = {name: (Path("/proc/sys") / name).read_text().strip() for name in KERNEL_TUNABLES}
        TUNABLES_RECORD.parent.mkdir(parents=True, exist_ok=True)
        TUNABLES_RECORD.write_text(json.dumps(values))

    def _restore_kernel_tunables(self) -> None:
        """Put back the values from before the first real node, once none is left."""
        if not TUNABLES_RECORD.exists() or any(Path("/run/netns").glob("vigil-*")):
            return
        with contextlib.suppress(OSError, ValueError):
            for name, value in json.loads(TUNABLES_RECORD.read_text()).items():
                (Path("/proc/sys") / name).write_text(value)
        TUNABLES_RECORD.unlink(missing_ok=True)


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # root here lacks CAP_SYS_RESOURCE: a sandbox asking for oom_score_adj -998
  # fails ("can't get final child's PID from pipe"); keep adjustments >= ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""

COREFILE = """\
.:53 {{
    bind {ip}
    errors
    health {ip}:{health}
    ready {ip}:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} vigil
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""

NODE_OBJECTS = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "vigil:kube-apiserver-kubelet-client"}}
roleRef:
  {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "vigil:coredns"}}
rules:
  - apiGroups: [""]
    resources: [services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "vigil:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "vigil:coredns"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}}]
---
# CoreDNS runs beside kubelet (not as a pod), on the node's address.
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {{k8s-app: kube-dns}}
spec:
  clusterIP: {dns_ip}
  ports:
    - {{name: dns, port: 53, protocol: UDP}}
    - {{name: dns-tcp, port: 53, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: vigil-devcluster
addressType: IPv4
endpoints:
  - addresses: ["{node_ip}"]
    conditions: {{ready: true}}
ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, protocol: TCP}}
"""
