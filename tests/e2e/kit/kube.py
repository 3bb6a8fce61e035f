"""kubectl bound to one namespace, fresh namespaces, pods, and the operator's rights."""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_IDENTITY = "system:serviceaccount:vigil-system:vigil-operator"
MD_LABEL = "vigil.dev/model-deployment"
REVISION_LABEL = "vigil.dev/revision"
#: A waiting kubectl's process may outlive its own --timeout by this much (it then says
#: what it waited for, where the process timeout would only kill it).
KUBECTL_GRACE_SECONDS = 30

T = TypeVar("T")


def safe(read: Callable[[], T], default: T) -> T:
    """``read()``, or ``default`` when the API server (or an endpoint) did not answer.

    For reads that poll: a failed read on a busy machine, or during an API
    server restart, is no observation, not a verdict.
    """
    try:
        return read()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError, OSError):
        return default


def configmap(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def ready(pod: Mapping[str, Any]) -> bool:
    """The pod is Ready and not terminating."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def pod_ip(pod: Mapping[str, Any]) -> str:
    return str(pod["status"]["podIP"])


def restart_count(pod: Mapping[str, Any], container: str) -> int:
    """How many times the kubelet restarted ``container`` of ``pod``, as its status says."""
    for found in (pod.get("status") or {}).get("containerStatuses") or ():
        if found.get("name") == container:
            return int(found.get("restartCount") or 0)
    raise AssertionError(f"pod {pod['metadata']['name']} reports no container {container}")


@dataclass(frozen=True)
class ServiceView:
    """What a Service selects at one moment."""

    #: Its selector; None when there is no such Service.
    selector: dict[str, str] | None
    #: IPs of the Ready pods it selects; None when unknown (the selector moved while
    #: the pods were read: a switch between the two reads is no moment without pods).
    ready: tuple[str, ...] | None


class Kube:
    """kubectl helpers bound to one namespace."""

    def __init__(self, cluster: ClusterClient, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        # The namespace first: after exec's "--" it would be the command's argument.
        return self.cluster.kubectl(
            "-n", self.namespace, *args, input=input, check=check, timeout=timeout
        )

    def get(self, *args: str) -> dict[str, Any] | None:
        """The object as JSON; None when it does not exist (any other error raises)."""
        try:
            return self.cluster.get("-n", self.namespace, *args)
        except subprocess.CalledProcessError as error:
            raise AssertionError(f"kubectl get {' '.join(args)}: {error.stderr}") from None

    def items(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = [kind] + (["-l", selector] if selector else [])
        return list((self.get(*args) or {}).get("items") or [])

    def apply(self, *documents: str | Mapping[str, Any]) -> str:
        """``kubectl apply`` of YAML text or objects, in this namespace."""
        text = "---\n".join(
            doc if isinstance(doc, str) else kube_yaml.dump(dict(doc)) for doc in documents
        )
        return self.cluster.apply(text, namespace=self.namespace)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        """The Events about ModelDeployments (with ``reason``, only those)."""
        return [
            event
            for event in self.items("events")
            if event.get("involvedObject", {}).get("kind") == "ModelDeployment"
            and (reason is None or event.get("reason") == reason)
        ]

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self.items("pods", selector)

    def revision_pods(self, revision: str) -> list[dict[str, Any]]:
        """The pods of one revision, by name."""
        pods = self.pods(f"{REVISION_LABEL}={revision}")
        return sorted(pods, key=lambda pod: str(pod["metadata"]["name"]))

    def logs(self, pod: str, container: str, *, previous: bool = False) -> str:
        """``kubectl logs`` of one container (``previous``: of its instance before the last
        restart), which must succeed."""
        extra = ["--previous"] if previous else []
        return self.run("logs", pod, "-c", container, *extra).stdout

    def follow_logs(self, pod: str, container: str) -> Callable[[float], str]:
        """``kubectl logs -f`` of one container from now on, in a daemon thread (it never
        holds up the session's exit): what it said up to its exit survives the pod. The call
        returned waits up to its argument's seconds for the stream to end and gives what it
        read ("" if it has not ended)."""
        read: list[str] = []

        def follow() -> None:
            read.append(self.run("logs", "-f", pod, "-c", container, check=False).stdout)

        stream = threading.Thread(target=follow, daemon=True)
        stream.start()

        def said(timeout: float) -> str:
            stream.join(timeout)
            return read[0] if read else ""

        return said

    def rollout_status(self, deployment: str, timeout: int = 60) -> None:
        args = ("rollout", "status", f"deployment/{deployment}", f"--timeout={timeout}s")
        self.run(*args, timeout=timeout + KUBECTL_GRACE_SECONDS)

    def wait_ready(self, what: str, timeout: int = 60) -> None:
        """``kubectl wait --for=condition=Ready`` on ``what`` (``md/wine``, ``pod/x``)."""
        args = ("wait", "--for=condition=Ready", what, f"--timeout={timeout}s")
        self.run(*args, timeout=timeout + KUBECTL_GRACE_SECONDS)

    def service_view(self, name: str) -> ServiceView:
        """The Service's selector and the Ready pods it selects (what endpoints would list).

        The selector is read before and after the pods: a promotion switches the
        Service and deletes the old revision 50 ms apart, and the old selector with
        the pods read after the deletion would show a moment that never existed.
        """

        def selector() -> dict[str, str] | None:
            service = self.get("service", name)
            return None if service is None else dict(service["spec"].get("selector") or {})

        before = selector()
        if not before:
            return ServiceView(before, ())
        pods = self.pods(",".join(f"{k}={v}" for k, v in before.items()))
        if selector() != before:
            return ServiceView(before, None)
        ips = tuple(pod_ip(p) for p in pods if ready(p) and p["status"].get("podIP"))
        return ServiceView(before, ips)

    def children(self, name: str = "wine") -> dict[str, list[dict[str, Any]]]:
        """The ModelDeployment's Deployments, Services and ConfigMaps (by its label)."""
        selector = f"{MD_LABEL}={name}"
        kinds = ("deployments", "services", "configmaps")
        return {kind: self.items(kind, selector) for kind in kinds}

    def deployments(self) -> list[str]:
        """Names of the Deployments in the namespace, sorted."""
        return sorted(d["metadata"]["name"] for d in self.items("deployments"))


@contextmanager
def fresh_namespace(cluster: ClusterClient, slug: str) -> Iterator[str]:
    """A namespace of its own (``e2e-<slug>-<random>``), deleted without waiting afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "vigil.dev/e2e=true", "--overwrite")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def enforce_restricted(cluster: ClusterClient, namespace: str) -> None:
    """Label the namespace so that PodSecurity enforces ``restricted`` (latest)."""
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )


def can_i(cluster: ClusterClient, verb: str, resource: str, namespace: str = "default") -> bool:
    """`kubectl auth can-i` as the operator's ServiceAccount; "kind/sub" names a subresource."""
    base, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    result = cluster.kubectl(
        "auth",
        "can-i",
        verb,
        base,
        *extra,
        f"--as={OPERATOR_IDENTITY}",
        "-n",
        namespace,
        check=False,
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), (verb, resource, result.stdout, result.stderr)
    return answer == "yes"
