"""Parallel test workers (pytest-xdist) sharing one cluster.

``E2E_WORKERS=N make test`` runs the integration and e2e suites on N workers
(``-n``, ``--dist loadgroup``), then the tests marked ``serial`` alone (the
default, 0, runs them all in one process). Each
worker is a process with its own session fixtures, so:

- one-time setup of the shared cluster (CRDs, the operator's RBAC, an
  operator overlay's cluster objects) runs under ``ClusterClient.setup_lock``
  and image imports under the node's lock: the second worker finds it done
  (every step is idempotent) instead of racing the first;
- a module's tests that share a module-scoped fixture (a Deployment, an
  in-cluster operator) go to one worker (``worker_group``), which sets it up
  once, as a serial run would;
- tests of a session fixture that runs cluster-wide controllers (Flux's, Argo CD's)
  share one worker too: two sets would fight over the same objects.
"""

from __future__ import annotations

import pytest

#: Session fixtures that start controllers watching the whole cluster: their tests
#: share the worker that runs them (the value: the group's name).
CLUSTER_WIDE_CONTROLLERS = {"flux": "flux-controllers", "argocd": "argocd-controllers"}


def worker_group(item: pytest.Item) -> str | None:
    """The group of tests ``item`` must run with on one worker, if any."""
    for fixture, group in CLUSTER_WIDE_CONTROLLERS.items():
        if fixture in getattr(item, "fixturenames", ()):
            return group
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for definitions in info.name2fixturedefs.values():
        if definitions and definitions[-1].scope == "module":
            return f"module:{item.nodeid.split('::')[0]}"
    return None


class GroupsKept:
    """Fails every test of a worker on which pytest-xdist did not put a grouped test's group
    into its node id: ``--dist loadgroup`` schedules by that suffix, so without it the tests
    of a group spread over the workers without a word (pytest-dev/pytest-xdist#1386). (A
    collection error on a worker reaches the terminal only as an INTERNALERROR without it.)"""

    def __init__(self) -> None:
        self.broken: str | None = None

    @pytest.hookimpl(trylast=True)  # after xdist's own hook wrote the suffixes
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        for item in items:
            marker = item.get_closest_marker("xdist_group")
            if marker is not None and "@" not in item.nodeid:
                self.broken = (
                    f"{item.nodeid} is in xdist group {marker.args[0]!r} but pytest-xdist did "
                    "not mark its node id, so --dist loadgroup would not keep the group on one "
                    "worker: this pytest and pytest-xdist do not work together "
                    "(pytest-dev/pytest-xdist#1386; pyproject.toml pins pytest below 9.2)"
                )
                return

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.broken:
            pytest.fail(self.broken, pytrace=False)
