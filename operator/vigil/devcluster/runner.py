"""The workload runner: a stand-in kubelet for the images it knows.

kwok pods run nothing. For tests and the demo this development tool (never
shipped to clusters) runs each pod's containers as local processes listening
on the pod's own IP (the local cluster gives pods loopback addresses), so the
real sidecar in front of a real MLServer answers at the pod IP, exactly where
the operator's direct scraper and Prometheus look for it.

What it does for every running pod it manages:

- writes the pod's ConfigMap and emptyDir volumes under
  ``<work dir>/<pod uid>/<volume>`` and keeps ConfigMap files up to date
  (the sidecar watches its settings file, as in a cluster);
- relocates mount paths: any argument, environment value or ConfigMap file
  content naming a mount path is rewritten to the local folder;
- rewrites "localhost" for the containers: in a pod, containers share a
  network namespace; here every pod has its own IP instead, so the sidecar is
  told to listen on the pod IP and to reach its model server at the pod IP;
- restarts a container process that exits (restartPolicy Always), with
  back-off, and stops every process when its pod goes away, as a kubelet
  terminates a pod: each container's ``preStop`` sleep first, then SIGTERM,
  all containers at once, in the background (a pod with a long drain never
  holds up the others), and a new pod given the IP of one still terminating
  waits for it (kwok frees an IP when the pod object goes; a kubelet frees
  it when the sandbox goes).

Images it knows: the project's own image (``vigil`` in the name: runs the
container's ``vigil-*`` command from this checkout's virtual environment) and
MLServer images (``mlserver`` in the name: runs ``mlserver start`` from
``.venv-mlserver`` on the model folder named by ``STORAGE_URI=file://...``).
Containers with other images are reported once and not run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.devcluster.cluster import ClusterClient, repo_root

log = logging.getLogger("vigil.devcluster.runner")

MANAGED_SELECTOR = "vigil.dev/model-deployment"
RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)


@dataclass
class ContainerProcess:
    """One container's process, with kubelet-like restart bookkeeping."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    #: ``lifecycle.preStop.sleep.seconds``: how long the kubelet waits before SIGTERM.
    pre_stop_sleep: float = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- start: {' '.join(self.argv)}\n".encode())
            log_file.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(
        self, grace: float = 10.0, *, pre_stop: Callable[[float], object] = time.sleep
    ) -> None:
        """The preStop sleep, SIGTERM (the sidecar drains), then SIGKILL after ``grace`` seconds.

        ``pre_stop`` sleeps (it may be cut short: the runner stopping everything).
        """
        if self.process is None or self.process.poll() is not None:
            return
        if self.pre_stop_sleep > 0:
            pre_stop(self.pre_stop_sleep)  # it keeps serving meanwhile
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@dataclass
class PodWorkload:
    uid: str
    namespace: str
    name: str
    ip: str
    folder: Path
    containers: dict[str, ContainerProcess] = field(default_factory=dict)


def _venv_bin(venv: str, command: str) -> str:
    root = repo_root() or Path.cwd()
    candidate = root / venv / "bin" / command
    if candidate.exists():
        return str(candidate)
    if venv == ".venv":
        # The runner itself runs from the project's environment.
        return str(Path(sys.executable).parent / command)
    raise FileNotFoundError(f"{candidate} not found: run `make install`")


def _resolve_env(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """A container's env entries: literal values and the fieldRefs the operator uses."""
    field_values = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "status.podIP": pod["status"].get("podIP", ""),
    }
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif path := item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath"):
            env[item["name"]] = field_values.get(path, "")
    return env


def _pre_stop_sleep(container: dict[str, Any]) -> float:
    """A container's ``lifecycle.preStop.sleep.seconds`` (0 without one)."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    return float((pre_stop.get("sleep") or {}).get("seconds", 0))


class WorkloadRunner:
    """Keeps local processes in line with the pods the cluster says exist."""

    def __init__(
        self,
        cluster: ClusterClient,
        work_dir: Path,
        namespaces: list[str] | None = None,
        selector: str = MANAGED_SELECTOR,
    ) -> None:
        self.cluster = cluster
        self.work_dir = work_dir
        self.namespaces = namespaces
        self.selector = selector
        self.pods: dict[str, PodWorkload] = {}
        #: Pods being terminated in the background, by IP (their processes may still serve).
        self.terminating: dict[str, threading.Thread] = {}
        #: Set while everything stops at once: preStop sleeps end early.
        self._hurry = threading.Event()
        self._warned_images: set[str] = set()

    # -- one reconciliation pass -------------------------------------------------

    def list_pods(self) -> list[dict[str, Any]]:
        scopes = [["-n", ns] for ns in self.namespaces] if self.namespaces else [["-A"]]
        pods: list[dict[str, Any]] = []
        for scope in scopes:
            result = self.cluster.kubectl(
                "get", "pods", *scope, "-l", self.selector, "-o", "json", check=False
            )
            if result.returncode == 0:
                pods.extend(json.loads(result.stdout)["items"])
            else:
                log.warning("listing pods failed: %s", result.stderr.strip())
                raise RuntimeError(result.stderr)
        return pods

    def sync_once(self) -> None:
        try:
            pods = self.list_pods()
        except RuntimeError:
            return  # the API server is away: keep what runs, as a kubelet would
        wanted = {
            p["metadata"]["uid"]: p
            for p in pods
            if p["status"].get("podIP")
            and p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        }
        for uid in list(self.pods):
            if uid not in wanted:
                self._terminate(self.pods.pop(uid))
        self.terminating = {ip: t for ip, t in self.terminating.items() if t.is_alive()}
        configmaps: dict[tuple[str, str], dict[str, str] | None] = {}
        for uid, pod in wanted.items():
            workload = self.pods.get(uid)
            if workload is None:
                if pod["status"]["podIP"] in self.terminating:
                    continue  # its IP still serves a terminating pod: next pass
                workload = self._new_workload(pod)
                self.pods[uid] = workload
            self._write_volumes(workload, pod, configmaps)
            self._ensure_processes(workload, pod)

    def stop_all(self) -> None:
        """Stop everything now (the runner is going away): preStop sleeps cut short."""
        self._hurry.set()
        for workload in self.pods.values():
            self._stop_pod(workload)
        self.pods.clear()
        for thread in self.terminating.values():
            thread.join(timeout=30)
        self.terminating.clear()
        self._hurry.clear()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.sync_once()
            except Exception:  # a dev tool that keeps going, like a kubelet
                log.exception("sync failed")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self.stop_all()

    # -- pods --------------------------------------------------------------------

    def _new_workload(self, pod: dict[str, Any]) -> PodWorkload:
        meta = pod["metadata"]
        folder = self.work_dir / f"{meta['namespace']}.{meta['name']}.{meta['uid'][:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        log.info("pod %s/%s at %s", meta["namespace"], meta["name"], pod["status"]["podIP"])
        return PodWorkload(
            meta["uid"], meta["namespace"], meta["name"], pod["status"]["podIP"], folder
        )

    def _terminate(self, workload: PodWorkload) -> None:
        """Stop a pod's processes in the background, as a kubelet terminates a pod."""
        thread = threading.Thread(target=self._stop_pod, args=(workload,), daemon=True)
        self.terminating[workload.ip] = thread
        thread.start()

    def _stop_pod(self, workload: PodWorkload) -> None:
        log.info("pod %s/%s gone: stopping its processes", workload.namespace, workload.name)
        threads = [
            threading.Thread(target=c.stop, kwargs={"pre_stop": self._hurry.wait}, daemon=True)
            for c in workload.containers.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)  # preStop, grace, SIGKILL

    # -- volumes -------------------------------------------------------------------

    def _mounts(self, workload: PodWorkload, pod: dict[str, Any]) -> dict[str, Path]:
        """mountPath -> local folder, for every volume of every container."""
        mounts: dict[str, Path] = {}
        for container in pod["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                mounts[mount["mountPath"]] = workload.folder / "volumes" / mount["name"]
        return mounts

    def _relocate(self, text: str, mounts: dict[str, Path]) -> str:
        """Rewrite mount paths to local folders in one pass, longest first, whole segments.

        One pass: a folder already rewritten (itself under /tmp, say) is never
        rewritten again by a shorter mount such as /tmp.
        """
        if not mounts:
            return text
        ordered = sorted(mounts, key=len, reverse=True)
        pattern = re.compile(
            "|".join(rf"{re.escape(path.rstrip('/'))}(?=/|$|[^\w./-])" for path in ordered)
        )
        local = {path.rstrip("/"): str(folder) for path, folder in mounts.items()}
        return pattern.sub(lambda match: local[match.group(0)], text)

    def _write_volumes(
        self,
        workload: PodWorkload,
        pod: dict[str, Any],
        cache: dict[tuple[str, str], dict[str, str] | None],
    ) -> None:
        config_mounts = {
            path: folder
            for path, folder in self._mounts(workload, pod).items()
            if any(v["name"] == folder.name and "configMap" in v for v in pod["spec"]["volumes"])
        }
        for volume in pod["spec"].get("volumes", []):
            folder = workload.folder / "volumes" / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            source = volume.get("configMap")
            if source is None:
                continue
            key = (workload.namespace, source["name"])
            if key not in cache:
                result = self.cluster.kubectl(
                    "get",
                    "configmap",
                    source["name"],
                    "-n",
                    workload.namespace,
                    "-o",
                    "json",
                    check=False,
                )
                cache[key] = (
                    json.loads(result.stdout).get("data", {}) if result.returncode == 0 else None
                )
            data = cache[key]
            if data is None:
                continue  # as a kubelet: the pod waits for its ConfigMap
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    continue
                target = folder / item["path"]
                content = self._relocate(data[item["key"]], config_mounts)
                if not target.exists() or target.read_text() != content:
                    # Replace atomically, as the kubelet's symlink swap does.
                    tmp = target.with_name(f".{target.name}.tmp")
                    tmp.parent.mkdir(parents=True, exist_ok=True)
                    tmp.write_text(content)
                    tmp.replace(target)

    # -- processes -------------------------------------------------------------------

    def _ensure_processes(self, workload: PodWorkload, pod: dict[str, Any]) -> None:
        now = time.monotonic()
        for container in pod["spec"]["containers"]:
            name = container["name"]
            current = workload.containers.get(name)
            if current is None:
                argv_env = self._command_for(container, pod, workload)
                if argv_env is None:
                    continue
                current = ContainerProcess(
                    name,
                    argv_env[0],
                    argv_env[1],
                    workload.folder / f"{name}.log",
                    pre_stop_sleep=_pre_stop_sleep(container),
                )
                workload.containers[name] = current
            if current.running():
                continue
            if current.process is not None:  # it exited: back off, then restart
                delay = RESTART_BACKOFF_SECONDS[
                    min(current.restarts, len(RESTART_BACKOFF_SECONDS) - 1)
                ]
                log.warning(
                    "%s/%s container %s exited with %s; restarting in %.0fs",
                    workload.namespace,
                    workload.name,
                    name,
                    current.process.returncode,
                    delay,
                )
                current.restarts += 1
                current.process = None
                current.next_start = now + delay
            if now >= current.next_start:
                current.start()

    def _command_for(
        self, container: dict[str, Any], pod: dict[str, Any], workload: PodWorkload
    ) -> tuple[list[str], dict[str, str]] | None:
        image = container["image"]
        mounts = self._mounts(workload, pod)
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workload.folder),
            "PYTHONUNBUFFERED": "1",
        }
        env = {
            **base_env,
            **{k: self._relocate(v, mounts) for k, v in _resolve_env(container, pod).items()},
        }
        if "mlserver" in image:
            return self._mlserver_command(container, env, workload)
        if "vigil" in image:
            return self._vigil_command(container, pod, env, mounts, workload)
        if image not in self._warned_images:
            self._warned_images.add(image)
            log.warning(
                "image %s is not one the runner knows: container %s not run",
                image,
                container["name"],
            )
        return None

    def _vigil_command(
        self,
        container: dict[str, Any],
        pod: dict[str, Any],
        env: dict[str, str],
        mounts: dict[str, Path],
        workload: PodWorkload,
    ) -> tuple[list[str], dict[str, str]]:
        command = [*container.get("command", []), *container.get("args", [])]
        if not command:
            raise ValueError(f"container {container['name']} has no command")
        argv = [_venv_bin(".venv", command[0])] + [self._relocate(a, mounts) for a in command[1:]]
        if Path(command[0]).name == "vigil-sidecar":
            server_port = next(
                (
                    port["containerPort"]
                    for other in pod["spec"]["containers"]
                    if other is not container
                    for port in other.get("ports", [])
                ),
                8080,
            )
            argv += [
                "--listen-host",
                workload.ip,
                "--metrics-host",
                workload.ip,
                "--upstream",
                f"http://{workload.ip}:{server_port}",
            ]
        return argv, env

    def _mlserver_command(
        self, container: dict[str, Any], env: dict[str, str], workload: PodWorkload
    ) -> tuple[list[str], dict[str, str]] | None:
        uri = env.get("STORAGE_URI", "")
        if not uri.startswith("file://"):
            log.warning(
                "%s/%s: MLServer needs STORAGE_URI=file://<model folder> here, got %r",
                workload.namespace,
                workload.name,
                uri,
            )
            return None
        port = next((p["containerPort"] for p in container.get("ports", [])), 8080)
        env = {
            **env,
            "MLSERVER_HOST": workload.ip,
            "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_GRPC_PORT": str(port + 1),
            "MLSERVER_METRICS_PORT": str(port + 2),
            # Parallel workers crash at start with current uvloop.
            "MLSERVER_PARALLEL_WORKERS": "0",
        }
        return [_venv_bin(".venv-mlserver", "mlserver"), "start", uri.removeprefix("file://")], env


@contextlib.contextmanager
def workload_runner_process(
    kubeconfig: str, namespace: str, work_dir: Path, interval: float = 0.5
) -> Iterator[Path]:
    """``vigil-devcluster run-workloads`` for one namespace as a child process.

    Yields ``work_dir`` (its ``runner.log`` and per-pod folders); stopped with
    SIGTERM (the runner stops its pods' processes), killed after 30 s.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VIGIL_KUBECONFIG": kubeconfig}
    command = [
        str(Path(sys.executable).parent / "vigil-devcluster"),
        "run-workloads",
        "--namespace",
        namespace,
        "--work-dir",
        str(work_dir),
        "--interval",
        str(interval),
    ]
    with (work_dir / "runner.log").open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        yield work_dir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    """``vigil-devcluster run-workloads``: run until interrupted."""
    import argparse

    from vigil.devcluster.cluster import connect

    parser = argparse.ArgumentParser(prog="vigil-devcluster run-workloads")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--namespace", action="append", dest="namespaces")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(message)s")
    cluster = connect(log=lambda line: log.info(line))
    work_dir = args.work_dir or Path(cluster.kubeconfig).parent / "workloads"
    runner = WorkloadRunner(cluster, work_dir, args.namespaces)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner.run(stop, interval=args.interval)
    return 0
