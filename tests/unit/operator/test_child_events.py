"""Which events of a ModelDeployment's children ask for a reconcile of it: a child deleted
while its watch was away, the sidecar settings edited by someone else; not the operator's
own writes."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from manual_clock import Clock
from test_reconciler import Harness, converged

from vigil.core import naming
from vigil.kube.cache import LISTING_SECONDS, ObjectCache
from vigil.kube.client import FIELD_MANAGER
from vigil.operator import handlers
from vigil.operator import runtime as operator_runtime
from vigil.operator.reconciler import Reconciler
from vigil.operator.runtime import CACHED_KINDS, OperatorOptions, Runtime, build_runtime

Nudges = list[tuple[str, str]]


def child(kind: str, name: str, version: int, owner: str = "wine") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ml",
            "resourceVersion": str(version),
            "labels": {naming.LABEL_MODEL_DEPLOYMENT: owner},
        },
    }


def written_by(body: dict[str, Any], *writes: tuple[str, str, str]) -> dict[str, Any]:
    """The body with managedFields of these writes: (manager, operation, second[/status])."""
    entries = []
    for manager, operation, when in writes:
        second, _, subresource = when.partition("/")
        entry = {"manager": manager, "operation": operation, "time": f"2026-01-01T10:00:{second}Z"}
        entries.append({**entry, "subresource": subresource} if subresource else entry)
    return {**body, "metadata": {**body["metadata"], "managedFields": entries}}


def recording(monkeypatch: pytest.MonkeyPatch, reconciler: Reconciler) -> Nudges:
    nudges: Nudges = []
    monkeypatch.setattr(reconciler, "nudge", lambda ns, name, delay=0.0: nudges.append((ns, name)))
    return nudges


class TestChildrenARelistingNoLongerShows:
    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def runtime(self, clock: Clock) -> Iterator[Runtime]:
        runtime = build_runtime(OperatorOptions())
        runtime.cache = ObjectCache(CACHED_KINDS, clock=clock)
        yield runtime
        for sweep in runtime.sweeps:
            sweep.cancel()

    @staticmethod
    def relist(runtime: Runtime, plural: str, *listed: dict[str, Any]) -> None:
        """A watch that got 410 Gone lists again: it shows only ``listed``; the sweep it
        schedules for when the listing's window is over runs (the cache's clock says when)."""
        operator_runtime.listing(runtime, plural, "ml", False)
        for body in listed:
            operator_runtime.remember(runtime, plural, None, body)
        operator_runtime.listing(runtime, plural, "ml", True)
        [sweep] = runtime.sweeps
        assert sweep.when() - asyncio.get_running_loop().time() > LISTING_SECONDS

    async def test_a_child_deleted_while_its_watch_was_away_asks_for_a_reconcile_of_its_owner(
        self, runtime: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        nudges = recording(monkeypatch, runtime.reconciler)
        operator_runtime.remember(runtime, "deployments", "ADDED", child("Deployment", "a", 10))
        operator_runtime.remember(runtime, "deployments", "ADDED", child("Deployment", "b", 11))
        clock.now += 5
        self.relist(runtime, "deployments", child("Deployment", "b", 11))  # schedules a sweep
        clock.now += LISTING_SECONDS
        operator_runtime.reconcile_ghosts(runtime)  # nothing read the cache meanwhile
        assert nudges == [("ml", "wine")]
        assert runtime.cache.get("Deployment", "ml", "a") is None

    async def test_a_ghost_a_reconcile_read_dropped_first_still_asks_for_one(
        self, runtime: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        nudges = recording(monkeypatch, runtime.reconciler)
        operator_runtime.remember(runtime, "services", "ADDED", child("Service", "wine", 10))
        clock.now += 5
        self.relist(runtime, "services")  # the namespace holds no Service any more
        clock.now += LISTING_SECONDS
        assert runtime.cache.get("Service", "ml", "wine") is None  # the read drops it
        operator_runtime.reconcile_ghosts(runtime)
        assert nudges == [("ml", "wine")]

    async def test_a_model_deployment_a_relisting_no_longer_shows_asks_for_none(
        self, runtime: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Deleted: garbage collection removes its children.
        nudges = recording(monkeypatch, runtime.reconciler)
        gone = {**child("ModelDeployment", "wine", 10), "apiVersion": "vigil.dev/v1alpha1"}
        operator_runtime.remember(runtime, naming.PLURAL, "ADDED", gone)
        clock.now += 5
        self.relist(runtime, naming.PLURAL)
        clock.now += LISTING_SECONDS
        operator_runtime.reconcile_ghosts(runtime)
        assert nudges == []
        assert runtime.cache.get("ModelDeployment", "ml", "wine") is None


def settings(version: int, *writes: tuple[str, str, str]) -> kopf.Body:
    body = {**child("ConfigMap", "wine-abc-sidecar", version), "data": {"k": "v"}}
    return kopf.Body(written_by(body, *writes))


class TestSidecarSettings:
    @pytest.fixture
    def memo(self) -> types.SimpleNamespace:
        runtime = types.SimpleNamespace(
            reconciler=build_runtime(OperatorOptions()).reconciler,
            cache=ObjectCache(CACHED_KINDS),
        )
        return types.SimpleNamespace(runtime=runtime)

    async def test_a_hand_edit_asks_for_a_reconcile_that_puts_them_back(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        harness = Harness()
        await converged(harness)
        nudges = recording(monkeypatch, harness.reconciler)
        memo = types.SimpleNamespace(
            runtime=types.SimpleNamespace(
                reconciler=harness.reconciler, cache=ObjectCache(CACHED_KINDS)
            )
        )
        key = next(key for key in harness.api.objects if key[0] == "ConfigMap")
        stored = harness.api.objects[key]
        written = dict(stored["data"])
        stored["data"] = {name: "tampered: true\n" for name in written}
        edited = written_by(
            stored, (FIELD_MANAGER, "Apply", "00"), ("kubectl-edit", "Update", "07")
        )
        await handlers.settings_changed(type="MODIFIED", body=kopf.Body(edited), memo=memo)
        assert nudges == [("ml", "wine")]
        await harness.reconciler.reconcile("ml", "wine")
        assert harness.api.writes == [("apply", "ConfigMap", key[2])]
        assert harness.api.objects[key]["data"] == written
        put_back = written_by(
            harness.api.objects[key],
            (FIELD_MANAGER, "Apply", "09"),
            ("kubectl-edit", "Update", "07"),
        )
        await handlers.settings_changed(type="MODIFIED", body=kopf.Body(put_back), memo=memo)
        assert nudges == [("ml", "wine")]  # its own write: no second reconcile

    async def test_the_operators_own_apply_asks_for_none(
        self, memo: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        nudges = recording(monkeypatch, memo.runtime.reconciler)
        for event_type in ("ADDED", "MODIFIED", None):
            body = settings(3, (FIELD_MANAGER, "Apply", "05"))
            await handlers.settings_changed(type=event_type, body=body, memo=memo)
        assert nudges == []

    async def test_a_deletion_asks_for_a_reconcile(
        self, memo: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        nudges = recording(monkeypatch, memo.runtime.reconciler)
        body = settings(3, (FIELD_MANAGER, "Apply", "05"))
        await handlers.settings_changed(type="DELETED", body=body, memo=memo)
        assert nudges == [("ml", "wine")]


@pytest.mark.parametrize(
    ("writes", "expected", "why"),
    [
        ([(FIELD_MANAGER, "Apply", "00"), ("kubectl-edit", "Update", "07")], True, "a hand edit"),
        ([("kubectl-edit", "Update", "07"), (FIELD_MANAGER, "Apply", "09")], False, "put back"),
        ([(FIELD_MANAGER, "Apply", "00")], False, "the operator's own apply"),
        (
            [(FIELD_MANAGER, "Apply", "00"), ("kube-controller-manager", "Update", "07/status")],
            False,
            "a Deployment's status update by its controller",
        ),
        (
            [("kubectl-edit", "Update", "07"), (FIELD_MANAGER, "Apply", "07")],
            True,
            "an edit in the same second as its own write: one reconcile, writing what differs",
        ),
        ([], True, "no managedFields: cannot tell; a reconcile writes only what differs"),
    ],
)
def test_only_someone_elses_write_to_the_object_counts_as_a_change_by_others(
    writes: list[tuple[str, str, str]], expected: bool, why: str
) -> None:
    body = written_by(child("Deployment", "wine-abc", 3), *writes)
    assert operator_runtime.changed_by_others(body) is expected, why
