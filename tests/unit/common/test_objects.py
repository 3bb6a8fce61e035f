"""Typed read-only views over raw objects (vigil.common.objects)."""

from __future__ import annotations

import base64
import copy

from vigil.common.objects import body, copied, items, section

POD = {
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u1",
        "generation": 3,
        "resourceVersion": "42",
        "labels": {"a": "b"},
        "ownerReferences": [{"uid": "owner", "controller": True}, {"uid": "other"}],
        "deletionTimestamp": "2026-01-01T00:00:00Z",
    },
    "status": {"phase": "Running"},
}


def test_a_view_answers_with_the_objects_fields() -> None:
    view = body(POD)
    assert (view.kind, view.meta.name, view.meta.namespace, view.meta.uid) == (
        "Pod",
        "p",
        "ns",
        "u1",
    )
    assert (view.meta.generation, view.meta.resource_version) == (3, "42")
    assert view.meta.labels == {"a": "b"} and view.meta.annotations == {}
    assert view.meta.deleting
    assert view.status["phase"] == "Running" and view.spec == {}


def test_absent_fields_read_as_the_apis_defaults() -> None:
    view = body(None)
    assert (view.meta.name, view.meta.generation, view.meta.deleting) == ("", 0, False)
    assert view.meta.labels == {} and view.status == {} and view.data == {}
    assert body({"metadata": None, "status": "odd"}).status == {}


def test_controller_and_owner_references() -> None:
    meta = body(POD).meta
    assert meta.controlled_by("owner") and not meta.controlled_by("other")
    assert meta.owned_by("other") and not meta.owned_by("nobody")


def test_a_configmaps_value_comes_from_data_or_binary_data() -> None:
    configmap = body(
        {"data": {"text": "hello"}, "binaryData": {"raw": base64.b64encode(b"\x00x").decode()}}
    )
    assert configmap.value("text") == "hello"
    assert configmap.value("raw") == b"\x00x"
    assert configmap.value("none") is None
    assert configmap.has_key("raw") and not configmap.has_key("none")


def test_sections_and_lists_along_a_path() -> None:
    route = {"spec": {"rules": [{"x": 1}], "odd": 5}}
    assert items(route, "spec", "rules") == [{"x": 1}]
    assert items(route, "spec", "missing") == ()
    assert section(route, "spec", "odd") == {}
    assert section(route, "spec", "rules", "deeper") == {}


def test_a_copy_equals_a_deep_copy_and_shares_nothing_mutable() -> None:
    value = {**POD, "spec": {"containers": [{"env": [{"name": "A"}]}], "pair": ({"x": 1}, 2)}}
    fresh = copied(value)
    assert fresh == copy.deepcopy(value)
    fresh["spec"]["containers"][0]["env"][0]["name"] = "B"
    fresh["spec"]["pair"][0]["x"] = 2
    fresh["metadata"]["labels"]["a"] = "c"
    assert value["spec"]["containers"][0]["env"][0]["name"] == "A"
    assert value["spec"]["pair"][0]["x"] == 1
    assert POD["metadata"]["labels"] == {"a": "b"}
