"""Model pods as the kubelet writes them, at each moment of the artifact fetch.

The status blocks are shaped like a kubelet 1.34's (``kubectl get pod -o
json`` of the real node): a fresh pod whose init container runs, one that
failed (``terminated``, then ``waiting: CrashLoopBackOff`` with the failure
in ``lastState``), one whose Secret is missing, one killed for memory.
"""

from __future__ import annotations

from typing import Any

URI = "s3://models/wine/2/model.tar.gz"
FORBIDDEN = (
    f"{URI}: 403 Forbidden: SignatureDoesNotMatch: The request signature we calculated "
    "does not match the signature you provided. Check your key and signing method."
)
UNREACHABLE = (
    "http://artifacts.ml.svc/wine/2/model.tar.gz: cannot connect to artifacts.ml.svc:80: "
    "connection refused (gave up after 6 attempts in a row)"
)
IMAGE = "vigil.local/vigil:0123456789abcdef"
STARTED = "2026-01-01T00:00:01Z"
FINISHED = "2026-01-01T00:00:03Z"


def terminated(code: int, message: str = "", reason: str = "") -> dict[str, Any]:
    ended: dict[str, Any] = {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "startedAt": STARTED,
        "finishedAt": FINISHED,
        "containerID": "containerd://1f2e",
    }
    if message:
        ended["message"] = message
    return {"terminated": ended}


def crash_loop(restarts: int = 1) -> dict[str, Any]:
    return {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {10 * restarts}s restarting failed container=vigil-fetch "
            "pod=wine-abc-5d9c7f-x2k4q_ml(0c1d)",
        }
    }


RUNNING = {"running": {"startedAt": STARTED}}
POD_INITIALIZING = {"waiting": {"reason": "PodInitializing"}}
SECRET_MISSING = {
    "waiting": {
        "reason": "CreateContainerConfigError",
        "message": 'secret "wine-artifacts" not found',
    }
}


def pod(
    revision: str,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    *,
    restarts: int = 0,
    name: str = "x2k4q",
    **status: Any,
) -> dict[str, Any]:
    """A model pod of ``revision`` whose vigil-fetch shows ``state`` (and ``last``)."""
    init: dict[str, Any] = {
        "name": "vigil-fetch",
        "state": state or RUNNING,
        "lastState": last or {},
        "ready": False,
        "restartCount": restarts,
        "image": IMAGE,
        "imageID": "",
        "started": state is RUNNING,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"wine-{revision}-5d9c7f-{name}",
            "namespace": "ml",
            "labels": {"vigil.dev/model-deployment": "wine", "vigil.dev/revision": revision},
        },
        "spec": {
            "initContainers": [
                {
                    "name": "vigil-fetch",
                    "image": IMAGE,
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"memory": "256Mi"},
                    },
                }
            ],
            "containers": [{"name": "server"}, {"name": "sidecar"}],
        },
        "status": {
            "phase": "Pending",
            "podIP": "10.244.0.7",
            "initContainerStatuses": [init],
            "containerStatuses": [
                {"name": name, "state": POD_INITIALIZING, "ready": False, "restartCount": 0}
                for name in ("server", "sidecar")
            ],
            **status,
        },
    }


def failed(revision: str, words: str = FORBIDDEN, code: int = 1) -> dict[str, Any]:
    """The fetch failed: first ``terminated``, as the pod's status says right after."""
    return pod(revision, terminated(code, words))


def backing_off(revision: str, words: str = UNREACHABLE, code: int = 75) -> dict[str, Any]:
    """The kubelet waits to restart a fetch that failed (the failure in ``lastState``)."""
    return pod(revision, crash_loop(), terminated(code, words), restarts=1)
