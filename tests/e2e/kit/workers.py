"""Parallel test workers (pytest-xdist) sharing one cluster.

``make test`` runs the integration and e2e suites on several workers
(``-n``, ``--dist loadgroup``), then the tests marked ``serial`` alone. Each
worker is a process with its own session fixtures, so:

- one-time setup of the shared cluster (CRDs, the operator's RBAC, images in
  the node) runs under ``one_worker_at_a_time``: the second worker finds it
  done (every step is idempotent) instead of racing the first;
- a module's tests that share a module-scoped fixture (a Deployment, an
  in-cluster operator) go to one worker (``worker_group``), which sets it up
  once, as a serial run would;
- tests of a session fixture that runs cluster-wide controllers (Flux's)
  share one worker too: two sets would fight over the same objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kit.kube import ROOT
from vigil.devcluster.common import exclusive

LOCKS = ROOT / ".vigil" / "e2e-locks"

#: Session fixtures that start controllers watching the whole cluster: their tests
#: share the worker that runs them (the value: the group's name).
CLUSTER_WIDE_CONTROLLERS = {"flux": "flux-controllers"}


@contextmanager
def one_worker_at_a_time(what: str) -> Iterator[None]:
    """Hold this checkout's lock ``what`` for the block (its cluster is the workers')."""
    with exclusive(LOCKS / f"{what}.lock"):
        yield


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
