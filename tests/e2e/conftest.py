"""Fixtures for end-to-end tests: a real cluster, a fresh namespace per test.

The cluster is the local control plane (started once per session, or reused
if already running), or the one ``VIGIL_KUBECONFIG`` points at. It is left
running after the session so that the next ``make test`` reuses it;
``make cluster-down`` removes it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest

from vigil.devcluster import ClusterClient, ClusterError, connect


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> ClusterClient:
    try:
        return connect(log=lambda line: print(line, flush=True))
    except ClusterError as error:
        pytest.fail(f"the e2e cluster is not available: {error}", pytrace=False)


@pytest.fixture
def namespace(cluster: ClusterClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own, deleted (without waiting) afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "vigil.dev/e2e=true", "--overwrite")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
