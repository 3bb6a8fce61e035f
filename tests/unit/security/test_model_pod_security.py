"""The pods the operator builds satisfy PodSecurity `restricted`; the sidecar more so.

Sidecar: non-root (a fixed non-zero uid), read-only root file system, all
capabilities dropped and none added, no privilege escalation, seccomp
RuntimeDefault, no service-account token, nothing privileged or from the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vigil.core import naming
from vigil.core.desired import (
    SIDECAR_CONTAINER,
    Owner,
    RevisionInfo,
    desired_deployment,
)
from vigil.core.spec import parse_spec

ROOT = Path(__file__).resolve().parents[3]
SPECS: dict[str, dict[str, Any]] = {
    "minimal": {"model": {"version": "1"}, "server": {"image": "mlserver"}},
    "everything": {
        "model": {"version": "2", "uri": "s3://b/m"},
        "server": {
            "image": "mlserver",
            "port": 9000,
            "command": ["mlserver"],
            "args": ["start", "."],
            "env": [{"name": "A", "value": "1"}],
            "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
        },
        "config": {"THREADS": "4"},
        "monitoring": {"reference": {"configMapKeyRef": {"name": "r", "key": "p.json"}}},
    },
}


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    deployment = desired_deployment(
        Owner("wine", "ml", "uid"),
        parse_spec("wine", spec),
        RevisionInfo("abc1234", "identity", naming.ROLE_STABLE),
        sidecar_image="vigil:test",
        replicas=1,
    )
    return deployment["spec"]["template"]["spec"]


def _effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_container_meets_pod_security_restricted(name: str) -> None:
    pod = _pod(SPECS[name])
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key
    for volume in pod.get("volumes") or ():
        assert "hostPath" not in volume, volume
    for container in pod["containers"]:
        context = container.get("securityContext") or {}
        assert _effective(pod, container, "runAsNonRoot") is True, container["name"]
        assert context.get("allowPrivilegeEscalation") is False, container["name"]
        assert context.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert not context.get("capabilities", {}).get("add"), container["name"]
        assert not context.get("privileged"), container["name"]
        seccomp = _effective(pod, container, "seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", container["name"]
        assert _effective(pod, container, "runAsUser") != 0, container["name"]
        for port in container.get("ports") or ():
            assert "hostPort" not in port, port


@pytest.mark.parametrize("name", sorted(SPECS))
def test_sidecar_is_non_root_with_read_only_root_and_no_capabilities(name: str) -> None:
    pod = _pod(SPECS[name])
    (sidecar,) = [c for c in pod["containers"] if c["name"] == SIDECAR_CONTAINER]
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] is True
    assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
    assert context["runAsGroup"] > 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # Its settings and the reference profile are mounted read-only; the only writable
    # place is a size-limited scratch directory.
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert mounts["sidecar-config"]["readOnly"] is True
    if "reference" in mounts:
        assert mounts["reference"]["readOnly"] is True
    writable = [m for m in sidecar["volumeMounts"] if not m.get("readOnly")]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in writable:
        assert volumes[mount["name"]]["emptyDir"]["sizeLimit"], mount
    assert pod["automountServiceAccountToken"] is False


def test_image_runs_as_a_non_root_user() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "the Dockerfile sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, users[-1]
