"""Shared pieces of the scale and soak benchmarks: a bench cluster with an audit log,
an admin API client, a real operator process and /proc sampling.

Why a cluster of its own: the benchmarks restart nothing in the shared
cluster, but they load it with thousands of objects and want an API server
whose audit log records the operator's requests only (the shared cluster has
no audit log, and other engineers' operators would mix in).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from vigil.common import kube_yaml
from vigil.core import naming
from vigil.devcluster.cluster import LocalCluster, pod_octet
from vigil.devcluster.common import free_port
from vigil.devcluster.operator_process import OPERATOR_BIN, operator_command

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_USER = "system:serviceaccount:vigil-system:vigil-operator"
SIDECAR_IMAGE = "ghcr.io/vigil-dev/vigil:bench"
MLSERVER_IMAGE = "seldonio/mlserver:1.7.1-sklearn"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Metadata-level audit events for the operator's identity only: every request it
# makes, nothing of kcm, the scheduler, kwok or the benchmark itself. Watches log
# ResponseStarted when they open; events are deduplicated by auditID.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


class BenchCluster(LocalCluster):
    """The local cluster, plus an audit log of the operator's requests and roomier nodes.

    kwok nodes default to 250 pods and 64 CPUs each; model pods request CPU,
    so the bench nodes declare enough of both that only the number of nodes
    (heartbeats) is a choice.
    """

    pods_per_node = 1100
    #: Pod IPs: a range put on the loopback interface (see up()), or None: the dev
    #: cluster's own 127.x ranges.
    local_pod_range: str | None = None

    def up(self) -> Path:
        """Give kwok pods addresses Kubernetes accepts in Endpoints (127.x are refused) that
        still answer locally: a range of this cluster's 10.<octet>.0.0/16 on the loopback
        interface (needs root).

        Why: with 127.x pod IPs the EndpointSlice and Endpoints controllers fail on
        every Service the operator creates and retry for ever (N = 500: 1 671
        FailedToUpdateEndpointSlices events and as many refused writes in the
        ramp), a load that plain Deployments (no Service) never see and a real
        cluster never has. On these addresses nothing listens, so the health
        loop's scrapes are refused at once, as on 127.x.

        With a real node the range is 10.<octet>.64.0/18, outside the node's pod,
        Service and link ranges, and is added once the node is up: the node's start
        refuses a machine that already routes any of the cluster's /16.
        """
        if not self.real_node:
            self._add_local_pod_range()
            return super().up()
        kubeconfig = super().up()
        self._add_local_pod_range()
        return kubeconfig

    def _local_range(self) -> str:
        octet = pod_octet(self.ports.etcd_client)
        return f"10.{octet}.64.0/18" if self.real_node else f"10.{octet}.0.0/16"

    def _add_local_pod_range(self) -> None:
        network = self._local_range()
        added = subprocess.run(
            ["ip", "addr", "add", network, "dev", "lo"], capture_output=True, text=True
        )
        # Already there (an earlier bench cluster's, not removed): use it. iproute2
        # words it "File exists" or "Address already assigned" depending on version.
        if added.returncode == 0 or any(
            words in added.stderr for words in ("File exists", "already assigned")
        ):
            self.local_pod_range = network
        else:
            self.log(
                f"bench: cannot put {network} on lo ({added.stderr.strip()}); pods get 127.x"
                " addresses and the endpoint controllers fail on every Service"
            )

    def down(self) -> None:
        local_range = self.local_pod_range or self._local_range()
        # Before the cluster's own teardown, which checks the machine for its routes.
        subprocess.run(["ip", "addr", "del", local_range, "dev", "lo"], capture_output=True)
        super().down()

    def pod_cidr(self, node: int) -> str:
        octet = pod_octet(self.ports.etcd_client)
        if self.real_node:
            return f"10.{octet}.{64 + node}.0/24"
        if self.local_pod_range is None:
            return super().pod_cidr(node)
        return f"10.{octet}.{node}.0/24"

    def component_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) each control-plane component has used so far."""
        pids = (self._read_state() or {}).get("pids") or {}
        figures = {}
        for name, pid in pids.items():  # type: ignore[union-attr]
            sample = proc_sample(int(pid))
            if sample is not None:
                figures[name] = sample.cpu_seconds
        return figures

    @property
    def audit_log(self) -> Path:
        return self.logs_dir / "audit.log"

    def _apiserver_args(self, bin_dir: Path) -> list[str]:
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(kube_yaml.dump(AUDIT_POLICY))
        return [
            *super()._apiserver_args(bin_dir),
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]

    def node_manifests(self) -> list[dict[str, object]]:
        nodes = super().node_manifests()
        for node in nodes:
            resources = {"cpu": "2000", "memory": "8Ti", "pods": str(self.pods_per_node)}
            status = node["status"]
            assert isinstance(status, dict)
            status["allocatable"] = dict(resources)
            status["capacity"] = dict(resources)
        return nodes

    def admin_token(self) -> str:
        return (self.pki_dir / "admin.token").read_text().strip()

    def install_vigil(self) -> str:
        """CRD, the operator's namespace, ServiceAccount and RBAC; returns its kubeconfig."""
        try:
            return self._install_vigil()
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"installing Vigil failed: {error.stderr}") from error

    def _install_vigil(self) -> str:
        client = self.client()
        client.kubectl("apply", "-f", str(ROOT / "crds" / "modeldeployments.yaml"))
        client.wait_established("modeldeployments.vigil.dev")
        folder = ROOT / "manifests" / "base"
        if not folder.is_dir():  # the layout before manifests/base
            folder = ROOT / "manifests"
        for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
            client.kubectl("apply", "-f", str(folder / name))
        return client.serviceaccount_kubeconfig(
            "vigil-system", "vigil-operator", self.state_dir / "operator.kubeconfig"
        )


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- the admin API client -------------------------------------------------------------


class Admin:
    """Concurrent creates and lists as the cluster admin (aiohttp, JSON in and out)."""

    def __init__(self, cluster: BenchCluster) -> None:
        self.server = cluster.server
        self._token = cluster.admin_token()
        self._ssl = ssl.create_default_context(cafile=str(cluster.pki_dir / "ca.crt"))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Admin:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
            timeout=aiohttp.ClientTimeout(total=120),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        assert self._session is not None
        async with self._session.request(
            method, self.server + path, json=body if body is not None else None
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}: {text[:300]}")
            return json.loads(text) if text else None

    async def create_all(self, path: str, bodies: list[dict[str, Any]], concurrency: int = 32):
        """POST every body, ``concurrency`` at a time (a burst, as `kubectl apply` of many)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                for attempt in range(5):
                    try:
                        await self.request("POST", path, body)
                        break
                    except RuntimeError as error:
                        if "HTTP 429" not in str(error) and "HTTP 5" not in str(error):
                            raise
                        await asyncio.sleep(0.5 * (attempt + 1))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def items(self, path: str) -> list[dict[str, Any]]:
        result = await self.request("GET", path)
        return list((result or {}).get("items") or [])

    async def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        await self.request(
            "POST",
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": dict(labels or {})},
            },
        )

    async def delete_namespace(self, name: str, timeout: float = 900) -> float:
        """Delete and wait until it is gone (its pods freed); returns the seconds it took."""
        started = time.monotonic()
        with contextlib.suppress(RuntimeError):
            await self.request("DELETE", f"/api/v1/namespaces/{name}")
        while time.monotonic() - started < timeout:
            try:
                await self.request("GET", f"/api/v1/namespaces/{name}")
            except RuntimeError as error:
                if "HTTP 404" in str(error):
                    return time.monotonic() - started
                raise
            await asyncio.sleep(2)
        raise RuntimeError(f"namespace {name} still there after {timeout:.0f}s")

    async def request_totals(self) -> Counter[tuple[str, str, str]]:
        """apiserver_request_total summed by (verb, resource, subresource)."""
        assert self._session is not None
        async with self._session.get(self.server + "/metrics") as response:
            text = await response.text()
        totals: Counter[tuple[str, str, str]] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, _, value = line.rpartition(" ")
            labels = dict(
                part.split("=", 1)
                for part in labels_text[len("apiserver_request_total{") : -1].split(",")
                if "=" in part
            )
            key = tuple(labels.get(k, '""').strip('"') for k in ("verb", "resource", "subresource"))
            totals[key] += float(value)  # type: ignore[index]
        return totals


def is_ready(md: Mapping[str, Any]) -> bool:
    conditions = (md.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_available(deployment: Mapping[str, Any], replicas: int) -> bool:
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    return (
        status.get("observedGeneration", 0) >= generation
        and status.get("availableReplicas") == replicas
        and status.get("updatedReplicas") == replicas
        and any(
            c.get("type") == "Available" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )


def _timestamp(text: str | None) -> datetime.datetime | None:
    return _parse_time(text) if text else None


def _became_true(obj: Mapping[str, Any], condition: str) -> datetime.datetime | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == condition and item.get("status") == "True":
            return _timestamp(item.get("lastTransitionTime"))
    return None


def spread(values: list[float]) -> dict[str, float]:
    """Median, 90th percentile and maximum of seconds (whole seconds: API timestamps)."""
    if not values:
        return {}
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(at(0.5), 1), "p90": round(at(0.9), 1), "max": round(ordered[-1], 1)}


def stages(
    start: datetime.datetime,
    deployments: Iterable[Mapping[str, Any]],
    model_deployments: Iterable[Mapping[str, Any]] = (),
) -> dict[str, dict[str, float]]:
    """When each step of the way happened, in seconds after ``start``, over all objects.

    Why: the ramp's one figure does not say whose work took the time. A
    ModelDeployment's way is: created, the operator creates its Deployment,
    kube-controller-manager (with the scheduler and kwok) makes that Available,
    the operator writes Ready. The plain phase has the middle two only.
    """
    since = lambda moment: (moment - start).total_seconds()  # noqa: E731
    created, available = [], []
    by_owner: dict[str, tuple[datetime.datetime, datetime.datetime | None]] = {}
    for item in deployments:
        metadata = item.get("metadata") or {}
        made = _timestamp(metadata.get("creationTimestamp"))
        done = _became_true(item, "Available")
        if made is None:
            continue
        created.append(since(made))
        if done is not None:
            available.append(since(done))
        owner = (metadata.get("labels") or {}).get(naming.LABEL_MODEL_DEPLOYMENT)
        if owner:
            by_owner[owner] = (made, done)
    result = {"deployment_created": spread(created), "deployment_available": spread(available)}
    ready, made_after, ready_after = [], [], []
    for md in model_deployments:
        metadata = md.get("metadata") or {}
        born = _timestamp(metadata.get("creationTimestamp"))
        done = _became_true(md, "Ready")
        if done is not None:
            ready.append(since(done))
        child = by_owner.get(str(metadata.get("name")))
        if child is None or born is None:
            continue
        made_after.append((child[0] - born).total_seconds())
        if done is not None and child[1] is not None:
            ready_after.append((done - child[1]).total_seconds())
    if ready:
        # Per object: how long the operator took to create its Deployment, and to
        # write Ready once kube-controller-manager had called that Deployment Available.
        result["model_deployment_ready"] = spread(ready)
        result["deployment_created_after_model_deployment"] = spread(made_after)
        result["ready_after_deployment_available"] = spread(ready_after)
    return result


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 1) for name in after}


# -- processes ----------------------------------------------------------------------------


@dataclass
class ProcSample:
    at: float
    rss_kib: int
    cpu_seconds: float
    fds: int
    threads: int


def proc_sample(pid: int) -> ProcSample | None:
    """RSS (VmRSS), user+system CPU, open fds and threads of one process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields.get("VmRSS", "0 kB").split()[0])
    threads = int(fields.get("Threads", "0").strip())
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime
    return ProcSample(time.monotonic(), rss, cpu, fds, threads)


def tcp_connections(pid: int) -> int:
    """Established TCP sockets of one process (its fds matched against /proc/net/tcp*)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(entry.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "01" and parts[9] in inodes:  # ESTABLISHED
                    count += 1
    return count


class Sampler:
    """Samples one process every ``period`` seconds in a thread (peak RSS, CPU over time)."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = proc_sample(self.pid)
            if sample is not None:
                self.samples.append(sample)
            self._stop.wait(self.period)

    def peak_rss_mib(self, since: float = 0.0) -> float:
        values = [s.rss_kib for s in self.samples if s.at >= since]
        return max(values, default=0) / 1024


@dataclass
class OperatorRunner:
    """A real `vigil-operator` process with the vigil-operator ServiceAccount's token only."""

    kubeconfig: str
    namespaces: list[str]
    log_path: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    sidecar_image: str = SIDECAR_IMAGE

    def start(self, timeout: float = 60) -> None:
        if not OPERATOR_BIN.exists():
            raise RuntimeError(f"{OPERATOR_BIN} is missing: run `make install` first")
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                operator_command(
                    self.namespaces,
                    sidecar_image=self.sidecar_image,
                    metrics_port=self.metrics_port,
                    health_port=self.health_port,
                    extra_args=self.extra_args,
                ),
                env={**os.environ, **self.env, "KUBECONFIG": self.kubeconfig},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vigil-operator exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"vigil-operator not healthy within {timeout:.0f}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# -- the audit log ----------------------------------------------------------------------------


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def audit_requests(
    path: Path, start: datetime.datetime, end: datetime.datetime, user: str = OPERATOR_USER
) -> list[dict[str, Any]]:
    """The user's requests received in [start, end), one entry per auditID."""
    seen: dict[str, dict[str, Any]] = {}
    with path.open() as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if (event.get("user") or {}).get("username") != user:
                continue
            received = _parse_time(event["requestReceivedTimestamp"])
            if start <= received < end:
                seen.setdefault(event["auditID"], event)
    return list(seen.values())


def describe_requests(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts by "verb resource[/subresource]" (e.g. "patch modeldeployments/status")."""
    counts: Counter[str] = Counter()
    for event in events:
        ref = event.get("objectRef") or {}
        resource = str(ref.get("resource") or event.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + str(ref["subresource"])
        counts[f"{event.get('verb')} {resource}"] += 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def delta(
    after: Counter[tuple[str, str, str]], before: Counter[tuple[str, str, str]]
) -> dict[str, float]:
    """apiserver_request_total deltas by "verb resource[/subresource]", non-zero only."""
    out: dict[str, float] = {}
    for key, value in after.items():
        change = value - before.get(key, 0.0)
        if change > 0:
            verb, resource, sub = key
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = change
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def machine() -> dict[str, Any]:
    """What the figures were measured on (for bench/README.md)."""
    info: dict[str, Any] = {"cores": os.cpu_count()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    info["kernel"] = os.uname().release
    info["python"] = sys.version.split()[0]
    with contextlib.suppress(Exception):
        import importlib.metadata

        info["kopf"] = importlib.metadata.version("kopf")
        info["aiohttp"] = importlib.metadata.version("aiohttp")
    return info


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


class LoadWatch:
    """The 1-minute load average sampled every 15 s over a run (min, max)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoadWatch:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        values = self.values or [os.getloadavg()[0]]
        return {
            "min": round(min(values), 2),
            "max": round(max(values), 2),
            "mean": round(sum(values) / len(values), 2),
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            self.values.append(os.getloadavg()[0])
            self._stop.wait(15)


def cluster_versions(cluster: BenchCluster) -> dict[str, str]:
    out = {}
    result = cluster.kubectl("version", "-o", "json", check=False)
    with contextlib.suppress(ValueError, KeyError):
        out["kubernetes"] = json.loads(result.stdout)["serverVersion"]["gitVersion"]
    out["bin_dir"] = str(cluster.bin_dir)
    return out


def disk_free(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9
