"""What the demo and the real-node tests apply: namespaces on the real node, local volumes."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import yaml_kit
from vigil.devcluster.common import ClusterError
from vigil.devcluster.incluster import local_volume, real_node_namespace
from vigil.devcluster.node import NODE_LABEL, NODE_NAME


def test_a_real_node_namespace_selects_and_tolerates_the_real_node() -> None:
    namespace = json.loads(real_node_namespace("demo"))
    annotations = namespace["metadata"]["annotations"]
    key, value = NODE_LABEL
    assert annotations["scheduler.alpha.kubernetes.io/node-selector"] == f"{key}={value}"
    tolerations = json.loads(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"])
    # The toleration matches the taint kubelet registers the node with.
    assert tolerations == [
        {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
    ]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user can reach (pytest's own tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="vigil-volume-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_local_volume_is_on_the_real_node_and_bound_to_its_claim(open_folder: Path) -> None:
    tmp_path = open_folder
    volume, claim = yaml_kit.load_all(local_volume("models", tmp_path, namespace="ml"))
    assert volume["spec"]["local"]["path"] == str(tmp_path.resolve())
    term = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == [NODE_NAME]
    assert volume["spec"]["claimRef"] == {"namespace": "ml", "name": "models"}
    assert volume["metadata"]["name"] == "models-ml"  # volumes are cluster-wide
    assert claim["metadata"] == {"name": "models", "namespace": "ml"}
    assert claim["spec"]["volumeName"] == "models-ml"


def test_a_folder_the_pods_users_cannot_reach_is_refused_with_its_path(
    open_folder: Path,
) -> None:
    closed = open_folder / "closed"
    (closed / "models").mkdir(parents=True)
    closed.chmod(0o700)
    with pytest.raises(ClusterError, match=r"closed does not let other users through"):
        local_volume("models", closed / "models", namespace="ml")
