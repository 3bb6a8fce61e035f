"""Start, reuse and stop a local control plane made of real Kubernetes binaries.

Layout of the state folder (``.vigil/cluster`` in the repository, or
``$VIGIL_CLUSTER_DIR``)::

    kubeconfig          admin kubeconfig (system:masters), printed by ``up``
    state.json          pids and ports of the running components
    logs/<component>.log
    pki/                CA, serving certificate, service-account keys, tokens
    etcd/               etcd's data

Every control-plane component listens on 127.0.0.1 only. Authentication
uses static bearer tokens (one identity per component, so the bootstrap RBAC
roles of kube-controller-manager, kube-scheduler and kube-proxy apply as in a
real cluster) and, for kubelet, client certificates; authorization is
Node,RBAC; the admission chain is the API server's default one, PodSecurity
included, plus NodeRestriction.

With ``real_node=True`` the cluster also has a real node (``node.py``:
containerd, kubelet, kube-proxy, CoreDNS, in a network namespace of its own)
besides the kwok nodes; its addresses are in ``network.py``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vigil.common import kube_yaml
from vigil.devcluster.common import (
    ClusterError,
    Recorded,
    command_line,
    exclusive,
    names_folder,
    pid_alive,
    process_identity,
    write_kubeconfig,
)
from vigil.devcluster.network import NodeNetwork, pod_octet
from vigil.devcluster.reads import ApiReader, Query, ReadError

if TYPE_CHECKING:
    from vigil.devcluster.node import RealNode


COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)

DEFAULT_PORT_BASE = 26400
# Pod IPs come from each node's podCIDR. Loopback ranges are accepted by the
# API server and kwok (see README, "Development"): a kwok pod's address stays on
# this machine, where nothing listens (a scrape is refused at once, never sent
# off the machine). The second octet follows the port base's hundreds
# (network.pod_octet: 26400 -> 127.164.<node>.0/24), so clusters whose bases
# are in different hundreds never hand out the same pod IPs; bases in one hundred
# (26400, 26410) or 10000 apart would, and ``up`` refuses the second.
POD_CIDR_TEMPLATE = "127.{octet}.{index}.0/24"
NODE_IP_TEMPLATE = "127.99.0.{index}"
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns")


#: Static-token identities: component -> (user, ``,"group"`` or empty).
TOKEN_USERS = (
    ("admin", ("vigil-admin", ',"system:masters"')),
    ("controller-manager", ("system:kube-controller-manager", "")),
    ("scheduler", ("system:kube-scheduler", "")),
    ("kube-proxy", ("system:kube-proxy", "")),
    ("coredns", ("system:coredns", "")),
)


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one local cluster, all on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(base, base + 1, base + 2, base + 3, base + 4, base + 5)

    def by_component(self) -> dict[str, list[int]]:
        return {
            "etcd": [self.etcd_client, self.etcd_peer],
            "kube-apiserver": [self.apiserver],
            "kube-controller-manager": [self.controller_manager],
            "kube-scheduler": [self.scheduler],
            "kwok": [self.kwok],
        }


def repo_root(start: Path | None = None) -> Path | None:
    """The checkout holding ``hack/build-cluster.sh``, searched upwards from ``start``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "hack" / "build-cluster.sh").is_file():
            return candidate
    source_checkout = Path(__file__).resolve().parents[3]
    if (source_checkout / "hack" / "build-cluster.sh").is_file():
        return source_checkout
    return None


def default_state_dir() -> Path:
    if env := os.environ.get("VIGIL_CLUSTER_DIR"):
        return Path(env)
    root = repo_root()
    if root is not None:
        return root / ".vigil" / "cluster"
    return Path.home() / ".local" / "state" / "vigil" / "cluster"


def build_binaries(log: Callable[[str], None] = print) -> Path:
    """Build (or find cached) control-plane binaries; return their folder."""
    if env := os.environ.get("VIGIL_BIN_DIR"):
        return Path(env)
    root = repo_root()
    if root is None:
        raise ClusterError(
            "cannot find hack/build-cluster.sh: run from a Vigil checkout or set VIGIL_BIN_DIR"
        )
    script = root / "hack" / "build-cluster.sh"
    bin_dir = printed_bin_dir(root)
    if all(
        (bin_dir / name).is_file()
        for name in (*COMPONENTS, *NODE_BINARIES, "kubectl", "prometheus", "promtool")
    ):
        return bin_dir
    log("devcluster: building the control plane from Go modules (cold build: 10-25 min)")
    result = subprocess.run(["bash", str(script)], check=False)
    if result.returncode != 0:
        raise ClusterError(f"hack/build-cluster.sh failed with exit code {result.returncode}")
    return bin_dir


def running_clusters() -> Iterator[tuple[Path, int]]:
    """(state folder, port base) of each local cluster whose etcd runs on this machine,
    whichever checkout started it (its etcd's flags say both: ``_etcd_args``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not args or Path(args[0]).name != "etcd" or "--name=vigil" not in args:
            continue
        flags = dict(arg.split("=", 1) for arg in args[1:] if arg.startswith("--") and "=" in arg)
        port = flags.get("--listen-client-urls", "").rsplit(":", 1)[-1]
        if "--data-dir" not in flags or not port.isdigit():
            continue
        data_dir = Path(flags["--data-dir"])
        with contextlib.suppress(OSError):  # a relative one is the process's own cwd's
            data_dir = Path(os.readlink(entry / "cwd")) / data_dir
        yield data_dir.parent, int(port)


def _wait_while(condition: Callable[[], bool], pid: int, seconds: float, poll: float) -> None:
    """Wait up to ``seconds`` while ``condition`` holds, reaping ``pid`` if it is our child."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and condition():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(poll)


def _ancestry() -> set[int]:
    """This process's pid and its ancestors'."""
    pids: set[int] = set()
    pid = os.getpid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the command name
    return pids


def _legacy_marker(component: str, marker: str) -> str:
    """What names a component as ours in a state written before identities were kept: the
    state folder in its arguments, but for the API server's forwarder, which then had none
    of it (``python -m vigil.devcluster.forward HOST PORT TARGET``)."""
    return "vigil.devcluster.forward" if component == "kube-apiserver-forward" else marker


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def _run_openssl(args: Sequence[str], cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise ClusterError("openssl is required to make the local cluster's certificates")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def cluster_endpoint(kubeconfig: Path) -> tuple[str, str]:
    """The server URL and base64 CA data of the current context of ``kubeconfig``."""
    config = yaml.safe_load(kubeconfig.read_text())
    current = config.get("current-context")
    context = next(c for c in config["contexts"] if c["name"] == current)["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    ca_data = cluster.get("certificate-authority-data", "")
    if not ca_data and cluster.get("certificate-authority"):
        import base64

        ca_data = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    return cluster["server"], ca_data


def real_node_wanted() -> bool:
    """Whether the local cluster (tests, demo, ``up``) has a real node: yes, unless
    ``VIGIL_REAL_NODE=0`` (a control plane with kwok nodes only, no root needed)."""
    return os.environ.get("VIGIL_REAL_NODE", "1") not in ("0", "false", "no")


def existing_kubeconfig() -> Path | None:
    """The kubeconfig named by ``VIGIL_KUBECONFIG``, if set; it must be reachable.

    ``KUBECONFIG`` alone is deliberately not honoured: it often points at a
    real cluster, and the tests create and delete namespaces.
    """
    value = os.environ.get("VIGIL_KUBECONFIG")
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ClusterError(f"VIGIL_KUBECONFIG={value} does not exist")
    return path


class LocalCluster:
    """One local control plane: start it, reuse it, stop it, talk to it."""

    def __init__(
        self,
        state_dir: Path | None = None,
        bin_dir: Path | None = None,
        port_base: int | None = None,
        nodes: int = 2,
        log: Callable[[str], None] = print,
        real_node: bool = False,
    ) -> None:
        self.state_dir = state_dir or default_state_dir()
        self._bin_dir = bin_dir
        base = port_base or int(os.environ.get("VIGIL_CLUSTER_PORT_BASE", DEFAULT_PORT_BASE))
        self.ports = Ports.from_base(base)
        self.network = NodeNetwork.for_port_base(base)
        self.nodes = nodes
        self.log = log
        self.real_node = real_node
        # Identities of the processes this object started, taken at their start.
        self._identities: dict[int, str | None] = {}

    @property
    def components(self) -> tuple[str, ...]:
        if not self.real_node:
            return COMPONENTS
        from vigil.devcluster.node import NODE_COMPONENTS

        return (*COMPONENTS, *NODE_COMPONENTS)

    def node(self) -> RealNode:
        """The real node's handle (also for a cluster whose node is down)."""
        from vigil.devcluster.node import RealNode

        return RealNode(self)

    # -- paths -------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = build_binaries(self.log)
        return self._bin_dir

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def _lock_file(self) -> Path:
        """Beside the state folder, never removed (``exclusive`` says why)."""
        return self.state_dir.parent / f"{self.state_dir.name}.lock"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """This cluster's lock: one ``up`` or ``down`` at a time, across processes (test
        workers, ``make cluster-up``, ``make demo``). Reentrant: ``up`` runs ``down``."""
        return exclusive(
            self._lock_file(), waiting=lambda what: self.log(f"devcluster: {what} (up or down)")
        )

    @property
    def _marker(self) -> str:
        """The state folder as every process of the cluster names it in its arguments."""
        return str(self.state_dir.resolve())

    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _read_state(self) -> dict[str, object] | None:
        try:
            return json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return None

    def _recorded(self, state: dict[str, object]) -> dict[str, Recorded]:
        """The processes a state names, by component (identities absent in an older file)."""
        pids: dict[str, int] = dict(state.get("pids") or {})  # type: ignore[call-overload]
        identities: dict[str, str | None] = dict(state.get("identities") or {})  # type: ignore[call-overload]
        return {
            name: Recorded(int(pid), identities.get(name), _legacy_marker(name, self._marker))
            for name, pid in pids.items()
        }

    # -- public API ----------------------------------------------------------

    def up(self) -> Path:
        """Start the cluster, or reuse a healthy running one; return the kubeconfig.

        Holds the cluster's lock throughout: another process's ``up`` waits and then
        reuses this one, and a ``down`` waits rather than stop it half started."""
        with self.locked():
            return self._up()

    def _up(self) -> Path:
        started = time.monotonic()
        if self.is_healthy():
            self.log(f"devcluster: reusing the running cluster at {self.server}")
            return self.kubeconfig
        self._check_octet_free()
        if self._read_state() is not None:
            self.log("devcluster: a previous cluster is not healthy; removing it first")
            self.down()
        elif any(self._processes_using_state_dir()):
            # An up killed before it wrote state.json left them (in sessions of their own):
            # holding the ports, they would fail this one, and no later down would know them.
            self.log("devcluster: processes of an up that was stopped are running; stopping them")
            self.down()
        if self.real_node:
            from vigil.devcluster.node import preflight

            preflight()  # before anything starts: root, packages, kernel
        self._check_ports_free()
        bin_dir = self.bin_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        tokens = self._make_pki()
        pids: dict[str, int] = {}
        try:
            pids["etcd"] = self._start("etcd", self._etcd_args(bin_dir))
            self._wait(
                "etcd",
                pids["etcd"],
                lambda: self._http_ok(f"http://127.0.0.1:{self.ports.etcd_client}/health"),
            )
            pids["kube-apiserver"] = self._start("kube-apiserver", self._apiserver_args(bin_dir))
            self._wait(
                "kube-apiserver",
                pids["kube-apiserver"],
                lambda: self._https_ok(self.ports.apiserver, "/readyz", tokens["admin"]),
                timeout=90,
            )
            self._write_component_kubeconfigs(tokens)
            pids["kube-controller-manager"] = self._start(
                "kube-controller-manager", self._controller_manager_args(bin_dir)
            )
            pids["kube-scheduler"] = self._start("kube-scheduler", self._scheduler_args(bin_dir))
            pids["kwok"] = self._start("kwok", self._kwok_args(bin_dir))
            self._write_state(pids)
            self._wait(
                "kube-controller-manager",
                pids["kube-controller-manager"],
                lambda: self._https_ok(self.ports.controller_manager, "/healthz"),
            )
            self._wait(
                "kube-scheduler",
                pids["kube-scheduler"],
                lambda: self._https_ok(self.ports.scheduler, "/healthz"),
            )
            self._wait(
                "kwok",
                pids["kwok"],
                lambda: self._http_ok(f"http://127.0.0.1:{self.ports.kwok}/healthz"),
            )
            self._create_nodes()
            self._wait_for_defaults(pids)
            if self.real_node:
                self.node().up(pids)
                self._write_state(pids)
        except BaseException:
            self._write_state(pids)
            raise
        self.log(
            f"devcluster: cluster up in {time.monotonic() - started:.1f}s; "
            f"kubeconfig: {self.kubeconfig}"
        )
        return self.kubeconfig

    def down(self) -> None:
        """Stop every component and remove all state: no process and no data stay behind.

        Only processes that are still the ones the state recorded are signalled: after
        a reboot its pids belong to others."""
        with self.locked():
            state = self._read_state() or {}
            processes = self._recorded(state)
            # What the state does not record (an up killed before writing it) stops first: a
            # kubelet or containerd left running would remake what the node's teardown removes.
            self._stop_all(self._unrecorded(processes))
            if state.get("real_node") or (self.state_dir / "node").exists():
                # The node's addresses follow the ports it was started with.
                started = Ports(**state["ports"]) if state.get("ports") else self.ports  # type: ignore[arg-type]
                node = LocalCluster(
                    self.state_dir, self._bin_dir, started.etcd_client, log=self.log
                )
                # A state without identities was written by a checkout from before the
                # node recorded what it created (it may have made all of it).
                legacy = bool(state) and "identities" not in state
                node.node().teardown(processes, legacy=legacy)
            self._stop_all(processes)
            self._stop_all(self._unrecorded({}))  # anything still naming the folder
            if self.state_dir.exists():
                shutil.rmtree(self.state_dir)
            self.log("devcluster: cluster down; no process or data left")

    def is_healthy(self) -> bool:
        state = self._read_state()
        if not state or not self.kubeconfig.is_file():
            return False
        processes = self._recorded(state)
        if set(processes) != set(self.components):
            return False
        if not all(process.running() for process in processes.values()):
            return False
        if state.get("ports") != asdict(self.ports):
            return False
        if not self._apiserver_flags_current(processes["kube-apiserver"].pid):
            return False
        token = self._admin_token()
        if token is None or not self._https_ok(self.ports.apiserver, "/readyz", token):
            return False
        return not self.real_node or self.node().healthy()

    def _apiserver_flags_current(self, pid: int) -> bool:
        """Whether the API server runs with the flags this checkout would start it with
        (a cluster started by an older checkout lacks what newer code relies on)."""
        try:
            running = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            return False
        if running == self._apiserver_args(self.bin_dir):
            return True
        self.log("devcluster: the running API server has other flags than this checkout's")
        return False

    def restart(self, component: str, *, down_seconds: float = 0.0, timeout: float = 90) -> int:
        """Stop one running component, start it again with the same flags; return its new pid.

        For fault tests (an API server restarted mid-rollout): its clients must
        ride through. ``down_seconds`` keeps it stopped that long first. Only on
        a cluster of one's own: everyone else using it loses the component meanwhile.
        """
        if component not in COMPONENTS:
            raise ClusterError(f"unknown component {component!r} (one of {', '.join(COMPONENTS)})")
        processes = self._recorded(self._read_state() or {})
        if component not in processes:
            raise ClusterError(f"{component} is not running from {self.state_dir}")
        self._stop(component, processes[component])
        pids = {name: process.pid for name, process in processes.items()}
        time.sleep(down_seconds)
        arguments = {
            "etcd": self._etcd_args,
            "kube-apiserver": self._apiserver_args,
            "kube-controller-manager": self._controller_manager_args,
            "kube-scheduler": self._scheduler_args,
            "kwok": self._kwok_args,
        }[component](self.bin_dir)
        pid = self._start(component, arguments)
        pids[component] = pid
        self._write_state(pids)
        token = self._admin_token()
        ready: dict[str, Callable[[], bool]] = {
            "etcd": lambda: self._http_ok(f"http://127.0.0.1:{self.ports.etcd_client}/health"),
            "kube-apiserver": lambda: self._https_ok(self.ports.apiserver, "/readyz", token),
            "kube-controller-manager": lambda: self._https_ok(
                self.ports.controller_manager, "/healthz"
            ),
            "kube-scheduler": lambda: self._https_ok(self.ports.scheduler, "/healthz"),
            "kwok": lambda: self._http_ok(f"http://127.0.0.1:{self.ports.kwok}/healthz"),
        }
        self._wait(component, pid, ready[component], timeout=timeout)
        return pid

    def client(self) -> ClusterClient:
        """kubectl and identities for this cluster, as for any other cluster."""
        return ClusterClient(self.kubeconfig, self.bin_dir / "kubectl")

    def kubectl(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return self.client().kubectl(*args, **options)

    # -- processes ------------------------------------------------------------

    def _start(self, name: str, args: list[str]) -> int:
        log_path = self.logs_dir / f"{name}.log"
        self.log(f"devcluster: starting {name} (log: {log_path})")
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.state_dir,
            )
        self._identities[process.pid] = process_identity(process.pid)
        return process.pid

    def _wait(self, name: str, pid: int, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        log_path = self.logs_dir / f"{name}.log"
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                raise ClusterError(
                    f"{name} exited during start; see its log {log_path}:\n{_tail(log_path)}"
                )
            if ready():
                return
            time.sleep(0.25)
        raise ClusterError(
            f"{name} did not become ready within {timeout:.0f}s; see its log {log_path}:\n"
            f"{_tail(log_path)}"
        )

    def _stop(self, name: str, process: Recorded) -> None:
        """SIGTERM, then SIGKILL after 10 s; only while the pid is still that process."""
        pid = process.pid
        if not process.running():
            if pid_alive(pid):
                self.log(
                    f"devcluster: {name}'s pid {pid} belongs to another process now "
                    "(a reboot since it started?): left alone"
                )
            return
        process.signal(signal.SIGTERM)
        _wait_while(process.running, pid, 10, 0.1)
        if process.running():
            self.log(f"devcluster: {name} (pid {pid}) ignored SIGTERM; killing it")
            process.signal(signal.SIGKILL)
        # Until its parent reaps it, a dead process still shows in `ps`.
        _wait_while(process.is_ours, pid, 5, 0.05)

    def _stop_all(self, processes: Mapping[str, Recorded]) -> None:
        """Last started first: clients before the API server, the API server before etcd."""
        for name, process in reversed(processes.items()):
            self._stop(name, process)

    def _unrecorded(self, recorded: Mapping[str, Recorded]) -> dict[str, Recorded]:
        """Processes naming the state folder but not in ``recorded`` (as running), oldest
        first; containerd's shims left out: the node's teardown stops them after the pods."""
        known = {process.pid for process in recorded.values() if process.running()}
        return {
            f"orphan-{found.pid}": found
            for found in self._processes_using_state_dir()
            if found.pid not in known
            and "containerd-shim" not in command_line(found.pid).split(" ", 1)[0]
        }

    def _processes_using_state_dir(self) -> Iterator[Recorded]:
        """Processes whose command line names our state folder (left over from a crash), but
        this one and its ancestors (a shell that ran ``up`` may name the folder too)."""
        marker, spared = self._marker, _ancestry()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in spared:
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if names_folder(cmdline, marker):
                    yield Recorded.now(int(entry.name), marker)

    def _check_octet_free(self) -> None:
        """No other running cluster has this one's address octet (port bases in one hundred
        share it): its real node's namespace, link, cgroups and pod IPs would be
        this one's too. Checked before anything is written or started."""
        octet = pod_octet(self.ports.etcd_client)
        others = [
            (folder, base)
            for folder, base in running_clusters()
            if folder.resolve() != self.state_dir.resolve()
        ]
        clash = next(((folder, base) for folder, base in others if pod_octet(base) == octet), None)
        if clash is None:
            return
        taken = {pod_octet(base) for _, base in others}
        free = next(
            (
                base
                for base in range(self.ports.etcd_client + 100, 65530, 100)
                if pod_octet(base) not in taken
            ),
            None,
        )
        raise ClusterError(
            f"port base {self.ports.etcd_client} gives this cluster the address octet {octet} "
            f"(10.{octet}.0.0/16, pods 127.{octet}.<node>.0/24, namespace vigil-{octet}), which "
            f"the running cluster of {clash[0]} (port base {clash[1]}) has: two clusters must "
            "not share it (port bases in one hundred, or 10000 apart, do). Choose a "
            "VIGIL_CLUSTER_PORT_BASE in another hundred"
            + (f" (e.g. {free})" if free else "")
            + ", or stop that cluster (make cluster-down in its checkout)"
        )

    def _check_ports_free(self) -> None:
        taken = [
            f"{component} needs 127.0.0.1:{port}, which is taken"
            for component, ports in self.ports.by_component().items()
            for port in ports
            if not _port_is_free(port)
        ]
        if taken:
            raise ClusterError(
                "; ".join(taken)
                + " (stop what holds it, or choose other ports with VIGIL_CLUSTER_PORT_BASE)"
            )

    def _write_state(self, pids: dict[str, int]) -> None:
        """The components' pids with their identities (taken when started, or kept from the
        state): ``down`` signals a pid only while it is still that process."""
        before = self._recorded(self._read_state() or {})
        identities = {
            name: self._identities[pid]
            if pid in self._identities
            else (before[name].identity if name in before and before[name].pid == pid else None)
            for name, pid in pids.items()
        }
        state = {
            "pids": pids,
            "identities": identities,
            "ports": asdict(self.ports),
            "real_node": self.real_node,
        }
        self._state_file().write_text(json.dumps(state, indent=2))

    # -- health checks ----------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        return context

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _https_ok(self, port: int, path: str, token: str | None = None) -> bool:
        """GET https://127.0.0.1:port/path; components other than the API server self-sign."""
        if port == self.ports.apiserver:
            context = self._ssl_context()
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _admin_token(self) -> str | None:
        try:
            return (self.pki_dir / "admin.token").read_text().strip()
        except OSError:
            return None

    # -- certificates and kubeconfigs ---------------------------------------------

    def _make_pki(self) -> dict[str, str]:
        pki = self.pki_dir
        pki.mkdir(parents=True, exist_ok=True)
        for command in (
            "req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt"
            " -subj /CN=vigil-local-ca",
            "genrsa -out sa.key 2048",
            "rsa -in sa.key -pubout -out sa.pub",
        ):
            _run_openssl(command.split(), pki)
        net = self.network
        # Pods reach the API server at the kubernetes Service's address, and the
        # node at the machine's end of its link: both are in the certificate.
        self.issue_certificate(
            "apiserver",
            "/CN=kube-apiserver",
            "serverAuth",
            f"IP:127.0.0.1,IP:{net.kubernetes_service_ip},IP:{net.host_ip},DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local",
        )
        # The API server's identity towards kubelets (logs, exec, port-forward).
        self.issue_certificate(
            "apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client", "clientAuth"
        )
        tokens = {name: secrets.token_hex(16) for name, _ in TOKEN_USERS}
        (pki / "tokens.csv").write_text(
            "".join(
                f"{tokens[name]},{user},uid-{name}{groups}\n"
                for name, (user, groups) in TOKEN_USERS
            )
        )
        (pki / "tokens.json").write_text(json.dumps(tokens))
        (pki / "admin.token").write_text(tokens["admin"])
        for path in pki.iterdir():
            path.chmod(0o600)
        return tokens

    def tokens(self) -> dict[str, str]:
        """Each component's bearer token (``TOKEN_USERS``), by component."""
        return dict(json.loads((self.pki_dir / "tokens.json").read_text()))

    def issue_certificate(
        self, name: str, subject: str, usage: str, alt_names: str | None = None
    ) -> None:
        """``pki/<name>.crt`` and ``.key``, signed by the cluster's CA."""
        extensions = f"extendedKeyUsage={usage}\n"
        if alt_names:
            extensions += f"subjectAltName={alt_names}\n"
        (self.pki_dir / f"{name}.ext").write_text(extensions)
        for command in (
            f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj {subject}",
            f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650"
            f" -out {name}.crt -extfile {name}.ext",
        ):
            _run_openssl(command.split(), self.pki_dir)
        for suffix in ("key", "crt"):
            (self.pki_dir / f"{name}.{suffix}").chmod(0o600)

    def _ca_data(self) -> str:
        import base64

        return base64.b64encode((self.pki_dir / "ca.crt").read_bytes()).decode()

    def _write_component_kubeconfigs(self, tokens: dict[str, str]) -> None:
        ca = self._ca_data()
        write_kubeconfig(self.kubeconfig, self.server, ca, tokens["admin"], "vigil-admin")
        for name, user in (
            ("controller-manager", "system:kube-controller-manager"),
            ("scheduler", "system:kube-scheduler"),
        ):
            write_kubeconfig(
                self.pki_dir / f"{name}.kubeconfig", self.server, ca, tokens[name], user
            )

    # -- component command lines ----------------------------------------------------

    def _etcd_args(self, bin_dir: Path) -> list[str]:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            str(bin_dir / "etcd"),
            "--name=vigil",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=vigil={peer}",
            "--unsafe-no-fsync",  # a throwaway test store: speed over durability
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ]

    def _apiserver_args(self, bin_dir: Path) -> list[str]:
        pki = self.pki_dir
        return [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1",
            # With a real node, pods and kubelet reach it through the forwarder
            # on the node link (node.py): the kubernetes Service's endpoint.
            f"--advertise-address={self.network.host_ip if self.real_node else '127.0.0.1'}",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # Aggregated-API front proxy CA: unused here, but its absence makes
            # every component log errors at start.
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            # PodNodeSelector and PodTolerationRestriction: a namespace's annotations
            # put all its pods on the real node (incluster.real_node_namespace).
            "--enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction",
            "--anonymous-auth=false",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-cluster-ip-range={self.network.service_range}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            # The default admission chain (PodSecurity, ServiceAccount,
            # NamespaceLifecycle, ResourceQuota, webhooks, ...) stays on.
            "--allow-privileged=true",
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            "--v=1",
        ]

    def _control_plane_component_args(self, bin_dir: Path, name: str, port: int) -> list[str]:
        """The flags the controller manager and the scheduler share: binary ``kube-<name>``,
        its kubeconfig and serving certificates under ``pki/<name>``, loopback, ``port``."""
        kubeconfig = self.pki_dir / f"{name}.kubeconfig"
        return [
            str(bin_dir / f"kube-{name}"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.pki_dir / name}",
        ]

    def _controller_manager_args(self, bin_dir: Path) -> list[str]:
        pki = self.pki_dir
        return [
            *self._control_plane_component_args(
                bin_dir, "controller-manager", self.ports.controller_manager
            ),
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={self.network.service_range}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            "--concurrent-gc-syncs=40",
            "--concurrent-namespace-syncs=20",
            "--v=1",
        ]

    def _scheduler_args(self, bin_dir: Path) -> list[str]:
        return [
            *self._control_plane_component_args(bin_dir, "scheduler", self.ports.scheduler),
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]

    def _kwok_args(self, bin_dir: Path) -> list[str]:
        root = repo_root()
        stages = (root / "hack" / "kwok" / "stages.yaml") if root else None
        if stages is None or not stages.is_file():
            raise ClusterError(
                "hack/kwok/stages.yaml not found: kwok needs its node and pod stages"
            )
        return [
            str(bin_dir / "kwok"),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{self.ports.kwok}",
            "--node-lease-duration-seconds=40",
            "--v=INFO",
        ]

    # -- cluster objects ----------------------------------------------------------------

    def pod_cidr(self, node: int) -> str:
        return POD_CIDR_TEMPLATE.format(octet=pod_octet(self.ports.etcd_client), index=node)

    def node_manifests(self) -> list[dict[str, object]]:
        """Fake nodes managed by kwok, each with a loopback podCIDR of its own."""
        return [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"kwok-node-{index}",
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": f"kwok-node-{index}",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "spec": {
                    "podCIDR": self.pod_cidr(index),
                    "podCIDRs": [self.pod_cidr(index)],
                },
                "status": {
                    "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                    "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                    "addresses": [
                        {"type": "InternalIP", "address": NODE_IP_TEMPLATE.format(index=index + 1)}
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "fake",
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                    },
                },
            }
            for index in range(self.nodes)
        ]

    def _create_nodes(self) -> None:
        manifest = kube_yaml.dump_all(self.node_manifests())
        self.kubectl("apply", "-f", "-", input=manifest)
        self.kubectl("wait", "node", "--all", "--for=condition=Ready", "--timeout=60s")
        self.log(f"devcluster: {self.nodes} kwok nodes Ready")

    def _wait_for_defaults(self, pids: dict[str, int]) -> None:
        """Namespaces are usable once their default ServiceAccount exists."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            if result.returncode == 0:
                return
            for name, pid in pids.items():
                if not pid_alive(pid):
                    log_path = self.logs_dir / f"{name}.log"
                    raise ClusterError(f"{name} died; see {log_path}:\n{_tail(log_path)}")
            time.sleep(0.5)
        raise ClusterError(
            "the default ServiceAccount never appeared; see "
            f"{self.logs_dir / 'kube-controller-manager.log'}"
        )


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl whose message holds kubectl's stderr (the API server's reason),
    so a traceback says why and not only the exit status."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def run_kubectl(
    kubectl: Path | str,
    kubeconfig: Path | str,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl; on failure raise with its stderr (tests read it)."""
    result = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise KubectlError(
            result.returncode,
            result.args,
            result.stdout,
            f"kubectl {' '.join(args)} failed: {result.stderr}",
        )
    return result


@functools.cache
def _reader_for(kubeconfig: str, modified: int) -> ApiReader | None:
    return ApiReader.from_kubeconfig(kubeconfig)


def _reader(kubeconfig: str) -> ApiReader | None:
    """One reader per kubeconfig file and version (a rewritten file gets a new one)."""
    try:
        return _reader_for(kubeconfig, os.stat(kubeconfig).st_mtime_ns)
    except (OSError, ValueError, KeyError, yaml.YAMLError):
        return None  # kubectl will say what is wrong with it


class ClusterClient:
    """What tests, benchmarks and the demo need from any cluster: kubectl and identities.

    Works for the local cluster and for an existing one (``VIGIL_KUBECONFIG``).
    """

    def __init__(self, kubeconfig: Path | str, kubectl_binary: Path | str) -> None:
        self.kubeconfig = str(kubeconfig)
        self.kubectl_binary = str(kubectl_binary)

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """One process at a time for cluster-wide setup (CRDs, RBAC, an operator's overlay):
        two client-side applies that both create an object race (one gets AlreadyExists).
        A file lock beside the kubeconfig (parallel test workers share it)."""
        with exclusive(Path(self.kubeconfig).parent / ".vigil-setup.lock"):
            yield

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.kubectl_binary,
            kubeconfig or self.kubeconfig,
            *args,
            input=input,
            check=check,
            timeout=timeout,
        )

    def apply(self, yaml_text: str, namespace: str | None = None) -> str:
        """``kubectl apply -f -`` (server-side validation as a user would see it)."""
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, input=yaml_text).stdout

    def get(self, *args: str) -> dict[str, Any] | None:
        """``kubectl get <args> -o json``: the object or list, None when not found; any
        other failure raises ``KubectlError`` (a ``CalledProcessError``) with the reason.

        A type with a name or a selector is read in this process (``reads.py``); any
        other form, or credentials it does not handle, runs kubectl."""
        query = Query.parse(args)
        reader = _reader(self.kubeconfig) if query else None
        try:
            if query and reader and reader.resource(query.resource):
                return reader.get(query)
        except (ReadError, OSError) as error:  # as kubectl's failures: unreachable, refused
            raise KubectlError(1, ["get", *args], "", str(error)) from None
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode == 0:
            return dict(json.loads(result.stdout))
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise KubectlError(
            result.returncode, result.args, result.stdout, f"kubectl get failed: {result.stderr}"
        )

    def get_json(self, *args: str) -> dict[str, object]:
        """``get``, which must find the object."""
        found = self.get(*args)
        if found is None:
            raise KubectlError(1, ["get", *args], "", f"{args}: NotFound")
        return found

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each CRD (``name.group``) serves its kind.

        Not `kubectl wait --for=condition=Established` alone: asked before the
        API server has written the CRD's first conditions, that kubectl fails
        at once (".status.conditions accessor error: <nil>", seen in
        bench/scale) instead of waiting.
        """
        deadline = time.monotonic() + timeout
        for crd in crds:
            while True:
                found = self.kubectl(
                    "get",
                    f"crd/{crd}",
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Established")].status}',
                    check=False,
                )
                if found.stdout.strip() == "True":
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"CRD {crd} not Established after {timeout:.0f}s: "
                        f"{(found.stderr or found.stdout).strip() or 'no condition yet'}"
                    )
                time.sleep(0.2)

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path | str | None = None
    ) -> str:
        """A kubeconfig whose only credential is a token of that ServiceAccount.

        Used to run the operator with nothing more than its RBAC: missing
        permissions then fail the tests instead of hiding behind admin.
        """
        token = self.kubectl(
            "create", "token", name, "-n", namespace, "--duration=24h"
        ).stdout.strip()
        server, ca_data = cluster_endpoint(Path(self.kubeconfig))
        target = (
            Path(path)
            if path
            else (
                Path(self.kubeconfig).parent / "serviceaccounts" / f"{namespace}.{name}.kubeconfig"
            )
        )
        write_kubeconfig(
            target, server, ca_data, token, f"system:serviceaccount:{namespace}:{name}"
        )
        return str(target)


def kubectl_binary(bin_dir: Path | None = None) -> Path:
    """The kubectl built with the cluster, else the one on PATH."""
    if bin_dir is not None and (bin_dir / "kubectl").is_file():
        return bin_dir / "kubectl"
    found = shutil.which("kubectl")
    if found is None:
        raise ClusterError("kubectl not found: run hack/build-cluster.sh or install kubectl")
    return Path(found)


def connect(log: Callable[[str], None] = print) -> ClusterClient:
    """The cluster to test against: ``VIGIL_KUBECONFIG`` if set, else the local one (started
    or reused)."""
    existing = existing_kubeconfig()
    if existing is not None:
        client = ClusterClient(existing, kubectl_binary(cached_bin_dir()))
        result = client.kubectl("version", "-o", "json", check=False, timeout=30)
        if result.returncode != 0:
            raise ClusterError(f"VIGIL_KUBECONFIG={existing} is not reachable: {result.stderr}")
        log(f"devcluster: using the existing cluster in VIGIL_KUBECONFIG={existing}")
        return client
    cluster = LocalCluster(log=log, real_node=real_node_wanted())
    kubeconfig = cluster.up()  # under the cluster's lock: parallel workers start it once
    return ClusterClient(kubeconfig, cluster.bin_dir / "kubectl")


def printed_bin_dir(root: Path) -> Path:
    """The folder hack/build-cluster.sh builds into (by version, under the user's cache),
    built or not."""
    printed = subprocess.run(
        ["bash", str(root / "hack" / "build-cluster.sh"), "--print"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(printed.stdout.strip())


def cached_bin_dir() -> Path | None:
    """:func:`printed_bin_dir` of this checkout; None outside one."""
    root = repo_root()
    return None if root is None else printed_bin_dir(root)
