"""The object cache: what it serves, how it stays as fresh as the operator's own writes.

The client tests run the adapter against a local HTTP server (as in
test_kube_client) to show which reads never reach the API server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from local_api import local_api
from manual_clock import Clock

from vigil.kube.cache import LISTING_SECONDS, TOMBSTONE_SECONDS, ObjectCache
from vigil.kube.client import KubeClient

LABEL = "vigil.dev/model-deployment"
KINDS: dict[str, str | None] = {"ModelDeployment": None, "Deployment": LABEL, "Service": LABEL}


def obj(name: str, version: int | str, *, owner: str = "wine", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "resourceVersion": str(version),
            "labels": {LABEL: owner},
            "managedFields": [{"manager": "vigil-operator"}],
        },
        **extra,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> ObjectCache:
    return ObjectCache(KINDS, clock=clock)


class TestFreshness:
    def test_a_newer_copy_replaces_an_older_one_never_the_reverse(self, cache: ObjectCache) -> None:
        cache.observe("Deployment", "ADDED", obj("wine-a", 10, spec={"replicas": 1}))
        cache.store("Deployment", obj("wine-a", 12, spec={"replicas": 2}))  # our apply's answer
        cache.observe("Deployment", "MODIFIED", obj("wine-a", 11, spec={"replicas": 1}))  # late
        assert cache.get("Deployment", "ml", "wine-a")["spec"] == {"replicas": 2}  # type: ignore[index]

    def test_versions_that_are_not_integers_let_the_later_arrival_win(
        self, cache: ObjectCache
    ) -> None:
        cache.store("Deployment", obj("wine-a", "abc", spec={"replicas": 1}))
        cache.store("Deployment", obj("wine-a", "abd", spec={"replicas": 2}))
        assert cache.get("Deployment", "ml", "wine-a")["spec"] == {"replicas": 2}  # type: ignore[index]

    def test_managed_fields_are_not_kept(self, cache: ObjectCache) -> None:
        cache.store("Deployment", obj("wine-a", 1))
        assert "managedFields" not in cache.get("Deployment", "ml", "wine-a")["metadata"]  # type: ignore[index]

    def test_every_read_is_a_copy_of_its_own(self, cache: ObjectCache) -> None:
        # Kept as compact JSON: a reader changing what it read changes nothing cached.
        body = obj("wine-a", 1, spec={"replicas": 1})
        cache.store("Deployment", body)
        body["spec"]["replicas"] = 5
        first = cache.get("Deployment", "ml", "wine-a")
        first["spec"]["replicas"] = 7  # type: ignore[index]
        listed = cache.list("Deployment", "ml", f"{LABEL}=wine")
        listed[0]["spec"]["replicas"] = 9
        assert cache.get("Deployment", "ml", "wine-a")["spec"] == {"replicas": 1}  # type: ignore[index]

    def test_kinds_not_cached_are_ignored(self, cache: ObjectCache) -> None:
        cache.store("ConfigMap", obj("wine-a-sidecar", 1))
        assert len(cache) == 0
        assert not cache.serves_list("ConfigMap", "ml", f"{LABEL}=wine")


class TestDeletions:
    def test_a_late_event_does_not_bring_a_deleted_object_back(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        cache.observe("Deployment", "ADDED", obj("wine-a", 10))
        cache.observe("Deployment", "DELETED", obj("wine-a", 15))
        cache.observe("Deployment", "MODIFIED", obj("wine-a", 14))
        assert cache.get("Deployment", "ml", "wine-a") is None
        # Created again (a newer version): back in.
        cache.observe("Deployment", "ADDED", obj("wine-a", 20))
        assert cache.get("Deployment", "ml", "wine-a") is not None

    def test_an_object_the_operator_deleted_comes_back_only_newer(self, cache: ObjectCache) -> None:
        cache.store("Service", obj("wine-a", 10))
        cache.forget("Service", "ml", "wine-a")
        cache.observe("Service", "MODIFIED", obj("wine-a", 10))
        assert cache.get("Service", "ml", "wine-a") is None
        cache.store("Service", obj("wine-a", 11))  # applied again
        assert cache.get("Service", "ml", "wine-a") is not None

    def test_updates_in_flight_at_the_deletion_do_not_bring_it_back(
        self, cache: ObjectCache
    ) -> None:
        # A Deployment still scaling when the operator deleted it: its MODIFIED events,
        # newer than the cached copy but older than the deletion, arrive after the DELETE.
        cache.observe("Deployment", "ADDED", obj("wine-old", 5))
        cache.forget("Deployment", "ml", "wine-old", deleted_at=9)
        cache.observe("Deployment", "MODIFIED", obj("wine-old", 8))
        assert cache.get("Deployment", "ml", "wine-old") is None
        cache.store("Deployment", obj("wine-old", 12))  # created again later
        assert cache.get("Deployment", "ml", "wine-old") is not None

    def test_tombstones_expire(self, cache: ObjectCache, clock: Clock) -> None:
        cache.observe("Deployment", "DELETED", obj("wine-a", 15))
        clock.now += TOMBSTONE_SECONDS + 1
        cache.observe("Deployment", "DELETED", obj("wine-b", 16))  # prunes the old one
        cache.observe("Deployment", "MODIFIED", obj("wine-a", 14))
        assert cache.get("Deployment", "ml", "wine-a") is not None


class TestLists:
    def test_a_list_by_the_watch_label_returns_that_owners_objects(
        self, cache: ObjectCache
    ) -> None:
        cache.store("Deployment", obj("wine-b", 1))
        cache.store("Deployment", obj("wine-a", 2))
        cache.store("Deployment", obj("iris-a", 3, owner="iris"))
        assert cache.serves_list("Deployment", "ml", f"{LABEL}=wine")
        names = [
            item["metadata"]["name"] for item in cache.list("Deployment", "ml", f"{LABEL}=wine")
        ]
        assert names == ["wine-a", "wine-b"]
        assert cache.list("Deployment", "other", f"{LABEL}=wine") == []

    def test_a_relabelled_object_moves_between_lists(self, cache: ObjectCache) -> None:
        cache.store("Deployment", obj("wine-a", 1))
        cache.store("Deployment", obj("wine-a", 2, owner="iris"))
        assert cache.list("Deployment", "ml", f"{LABEL}=wine") == []
        assert len(cache.list("Deployment", "ml", f"{LABEL}=iris")) == 1

    @pytest.mark.parametrize(
        "selector",
        ["", LABEL, f"{LABEL}!=wine", f"{LABEL}==wine", f"{LABEL}=wine,x=y", "other=wine"],
    )
    def test_other_selectors_go_to_the_api_server(self, cache: ObjectCache, selector: str) -> None:
        assert not cache.serves_list("Deployment", "ml", selector)

    def test_kinds_watched_without_a_label_serve_gets_only(self, cache: ObjectCache) -> None:
        cache.store("ModelDeployment", obj("wine", 1))
        assert cache.get("ModelDeployment", "ml", "wine") is not None
        assert not cache.serves_list("ModelDeployment", "ml", f"{LABEL}=wine")


class TestRelisting:
    def test_a_listing_is_distrusted_until_over_then_ghosts_are_dropped(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        cache.observe("Deployment", "ADDED", obj("wine-a", 1))
        cache.observe("Deployment", "ADDED", obj("wine-ghost", 2))  # deleted while disconnected
        clock.now += 5
        cache.listing_started("Deployment", "ml")
        cache.observe("Deployment", None, obj("wine-a", 1))  # the relisting shows only wine-a
        cache.listing_done("Deployment", "ml")
        assert not cache.serves_list("Deployment", "ml", f"{LABEL}=wine")
        assert cache.get("Deployment", "ml", "wine-a") is None  # read from the API server
        clock.now += LISTING_SECONDS
        assert cache.serves_list("Deployment", "ml", f"{LABEL}=wine")
        names = [
            item["metadata"]["name"] for item in cache.list("Deployment", "ml", f"{LABEL}=wine")
        ]
        assert names == ["wine-a"]

    def test_a_listing_is_distrusted_from_its_start_in_its_namespace_only(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        # Seen before a pause or a 410 Gone: the relisting may not show it any more.
        cache.observe("Deployment", None, obj("wine-old", 10))
        clock.now += 600
        cache.listing_started("Deployment", "ml")
        assert cache.get("Deployment", "ml", "wine-old") is None  # read from the API server
        cache.observe("Deployment", None, obj("wine-a", 1))
        assert not cache.serves_list("Deployment", "ml", f"{LABEL}=wine")
        cache.listing_done("Deployment", "ml")
        assert not cache.serves_list("Deployment", "ml", f"{LABEL}=wine")
        assert cache.serves_list("Deployment", "other", f"{LABEL}=wine")
        assert cache.serves_list("Service", "ml", f"{LABEL}=wine")

    def test_an_empty_relisting_drops_what_the_namespace_held(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        # Its last Deployment deleted while the watch was away: the listing shows nothing,
        # so no listed object says that it ran; the watch says so when it starts.
        cache.observe("Deployment", "ADDED", obj("wine-ghost", 2))
        clock.now += 5
        cache.listing_started("Deployment", "ml")
        cache.listing_done("Deployment", "ml")  # it found nothing
        assert cache.get("Deployment", "ml", "wine-ghost") is None  # read from the API server
        clock.now += LISTING_SECONDS
        assert cache.serves_list("Deployment", "ml", f"{LABEL}=wine")
        assert cache.list("Deployment", "ml", f"{LABEL}=wine") == []
        assert cache.get("Deployment", "ml", "wine-ghost") is None
        assert len(cache) == 0
        # Dropped by a read, it is still handed out: no event tells its owner.
        assert [body["metadata"]["name"] for _, body in cache.gone()] == ["wine-ghost"]

    def test_a_cluster_wide_relisting_covers_every_namespace(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        cache.observe("Deployment", "ADDED", obj("wine-a", 1))
        cache.observe(
            "Deployment",
            "ADDED",
            {**obj("gone", 2), "metadata": {**obj("gone", 2)["metadata"], "namespace": "other"}},
        )
        clock.now += 5
        cache.listing_started("Deployment", None)
        cache.observe("Deployment", None, obj("wine-a", 1))  # "other" now holds none
        cache.listing_done("Deployment", None)
        assert not cache.serves_list("Deployment", "other", f"{LABEL}=wine")
        assert cache.serves_list("Service", "other", f"{LABEL}=wine")
        clock.now += LISTING_SECONDS
        assert cache.get("Deployment", "other", "gone") is None
        assert cache.get("Deployment", "ml", "wine-a") is not None
        assert len(cache) == 1

    def test_a_listing_that_failed_drops_nothing(self, cache: ObjectCache, clock: Clock) -> None:
        # The API server unreachable: kopf's listing gives up without completing.
        cache.observe("Deployment", "ADDED", obj("wine-a", 1))
        clock.now += 5
        cache.listing_started("Deployment", "ml")
        clock.now += LISTING_SECONDS * 3
        assert cache.get("Deployment", "ml", "wine-a") is not None

    def test_objects_written_during_a_listing_survive_it(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        cache.listing_started("Service", "ml")
        cache.observe("Service", None, obj("wine", 1))
        cache.listing_done("Service", "ml")
        clock.now += 1
        cache.store("Service", obj("wine-b", 5))  # applied while the listing ran
        clock.now += LISTING_SECONDS
        assert cache.get("Service", "ml", "wine-b") is not None
        assert cache.get("Service", "ml", "wine") is not None

    def test_what_a_relisting_no_longer_showed_is_handed_out_once(
        self, cache: ObjectCache, clock: Clock
    ) -> None:
        # No event tells the owner of a child deleted while the watch was away.
        cache.observe("Deployment", "ADDED", obj("wine-a", 1))
        cache.observe("Deployment", "ADDED", obj("wine-ghost", 2, spec={"replicas": 3}))
        clock.now += 5
        cache.listing_started("Deployment", "ml")
        cache.observe("Deployment", None, obj("wine-a", 1))
        cache.listing_done("Deployment", "ml")
        assert cache.gone() == []  # its window is still open
        clock.now += LISTING_SECONDS
        [(kind, body)] = cache.gone()
        assert kind == "Deployment"
        assert body["metadata"]["name"] == "wine-ghost" and body["spec"] == {"replicas": 3}
        assert cache.gone() == []


@pytest.fixture
async def cached_client() -> AsyncIterator[tuple[list[str], KubeClient, ObjectCache]]:
    requests: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        requests.append(f"{request.method} {request.path}")
        if request.method == "GET" and request.path.endswith("/services/foreign"):
            return web.json_response({"metadata": {"name": "foreign"}})
        if request.method == "GET":
            return web.json_response({"message": "not found"}, status=404)
        name = request.path.split("/")[-2 if request.path.endswith("/status") else -1]
        return web.json_response(obj(name, 100))

    cache = ObjectCache(KINDS)
    async with local_api(handle, cache=cache) as client:
        yield requests, client, cache


class TestClientWithCache:
    async def test_watched_objects_are_read_without_a_request(
        self, cached_client: tuple[list[str], KubeClient, ObjectCache]
    ) -> None:
        requests, client, cache = cached_client
        cache.observe("ModelDeployment", "ADDED", obj("wine", 3))
        cache.observe("Deployment", "ADDED", obj("wine-a", 4))
        body = await client.get("ModelDeployment", "ml", "wine")
        assert body is not None and body["metadata"]["name"] == "wine"
        assert [
            d["metadata"]["name"] for d in await client.list("Deployment", "ml", f"{LABEL}=wine")
        ] == ["wine-a"]
        assert requests == []

    async def test_what_is_read_is_a_copy(
        self, cached_client: tuple[list[str], KubeClient, ObjectCache]
    ) -> None:
        _, client, cache = cached_client
        cache.observe("Deployment", "ADDED", obj("wine-a", 4, spec={"replicas": 1}))
        body = await client.get("Deployment", "ml", "wine-a")
        assert body is not None
        body["spec"]["replicas"] = 5
        assert cache.get("Deployment", "ml", "wine-a")["spec"] == {"replicas": 1}  # type: ignore[index]

    async def test_a_miss_asks_the_api_server(
        self, cached_client: tuple[list[str], KubeClient, ObjectCache]
    ) -> None:
        requests, client, _ = cached_client
        # Someone else's Service of the same name is not watched (no label): ask.
        assert await client.get("Service", "ml", "foreign") == {"metadata": {"name": "foreign"}}
        assert await client.get("ConfigMap", "ml", "reference") is None  # kind not cached
        assert requests == [
            "GET /api/v1/namespaces/ml/services/foreign",
            "GET /api/v1/namespaces/ml/configmaps/reference",
        ]

    async def test_writes_are_recorded_at_once(
        self, cached_client: tuple[list[str], KubeClient, ObjectCache]
    ) -> None:
        requests, client, cache = cached_client
        await client.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "wine-b", "namespace": "ml"},
            }
        )
        assert cache.get("Service", "ml", "wine-b") is not None
        await client.patch_status("ModelDeployment", "ml", "wine", {"phase": "Ready"})
        assert cache.get("ModelDeployment", "ml", "wine") is not None
        await client.delete("Service", "ml", "wine-b")
        assert cache.get("Service", "ml", "wine-b") is None
        assert [request.split()[0] for request in requests] == ["PATCH", "PATCH", "DELETE"]
        # The DELETE's answer (the object as deleted, version 100) buries it at that version.
        cache.observe("Service", "MODIFIED", obj("wine-b", 99))
        assert cache.get("Service", "ml", "wine-b") is None
