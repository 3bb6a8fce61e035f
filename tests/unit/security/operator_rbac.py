"""The operator's RBAC as shipped, read from the manifests a user installs.

Why through ``kubectl kustomize``: the install is ``kubectl apply -k
manifests/base`` (overlays add to it), so the rules that matter are the ones
kustomize renders, not one file read in isolation. Before the kustomize
layout existed the rules lived in manifests/rbac.yaml; the helper reads that
when manifests/base is absent.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import yaml_kit
from vigil.devcluster.cluster import ClusterError, cached_bin_dir, kubectl_binary

ROOT = Path(__file__).resolve().parents[3]
SERVICE_ACCOUNT = ("vigil-system", "vigil-operator")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
ESCALATING_VERBS = frozenset({"escalate", "bind", "impersonate", "approve", "sign"})


@dataclass(frozen=True)
class Rule:
    """One (apiGroup, resource) pair of a policy rule, with its verbs."""

    group: str
    resource: str
    verbs: frozenset[str]
    resource_names: tuple[str, ...]


def kubectl() -> str:
    """The kubectl built with the local cluster, else the one on PATH."""
    try:
        return str(kubectl_binary(cached_bin_dir()))
    except ClusterError as error:
        pytest.fail(f"kubectl is needed to render manifests/base: {error}")


def rendered_manifests() -> list[dict[str, Any]]:
    """Every object a user installs with the operator (kustomize) or manifests/rbac.yaml."""
    return [doc for doc in yaml_kit.load_all(_rendered_text()) if doc]


# Rendered once per process: three tests read it, each render is two subprocesses.
@functools.cache
def _rendered_text() -> str:
    base = ROOT / "manifests" / "base"
    if not base.is_dir():
        return (ROOT / "manifests" / "rbac.yaml").read_text()
    result = subprocess.run(
        [kubectl(), "kustomize", str(base)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize manifests/base failed: {result.stderr}")
    return result.stdout


def _binds_operator(binding: dict[str, Any]) -> bool:
    namespace, name = SERVICE_ACCOUNT
    return any(
        s.get("kind") == "ServiceAccount"
        and s.get("name") == name
        and s.get("namespace", binding.get("metadata", {}).get("namespace")) == namespace
        for s in binding.get("subjects") or ()
    )


def operator_bindings(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d.get("kind") in ("ClusterRoleBinding", "RoleBinding") and _binds_operator(d)
    ]


def operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The (Cluster)Roles bound to the operator's ServiceAccount."""
    wanted = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in operator_bindings(docs)}
    return [
        d
        for d in docs
        if d.get("kind") in ("ClusterRole", "Role") and (d["kind"], d["metadata"]["name"]) in wanted
    ]


def operator_rules(docs: list[dict[str, Any]] | None = None) -> list[Rule]:
    docs = rendered_manifests() if docs is None else docs
    rules: list[Rule] = []
    for role in operator_roles(docs):
        for raw in role.get("rules") or ():
            for group in raw.get("apiGroups") or ():
                for resource in raw.get("resources") or ():
                    rules.append(
                        Rule(
                            group,
                            resource,
                            frozenset(raw.get("verbs") or ()),
                            tuple(raw.get("resourceNames") or ()),
                        )
                    )
    return rules


def raw_operator_rules(docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    docs = rendered_manifests() if docs is None else docs
    return [raw for role in operator_roles(docs) for raw in role.get("rules") or ()]
