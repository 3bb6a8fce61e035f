"""In-process reads answer as ``kubectl get -o json`` would, and leave other forms to kubectl."""

from __future__ import annotations

import io
import json
import ssl
import urllib.error
from typing import Any

import pytest

from vigil.devcluster.reads import ApiReader, Query, ReadError

#: What /api and /apis answer with aggregated discovery, cut to what the reader uses.
DISCOVERY = {
    "/api": {
        "items": [
            {
                "metadata": {"name": ""},
                "versions": [
                    {
                        "version": "v1",
                        "resources": [
                            {
                                "resource": "pods",
                                "singularResource": "pod",
                                "shortNames": ["po"],
                                "responseKind": {"kind": "Pod"},
                                "scope": "Namespaced",
                            },
                            {
                                "resource": "events",
                                "singularResource": "event",
                                "shortNames": ["ev"],
                                "responseKind": {"kind": "Event"},
                                "scope": "Namespaced",
                            },
                            {
                                "resource": "nodes",
                                "singularResource": "node",
                                "responseKind": {"kind": "Node"},
                                "scope": "Cluster",
                            },
                        ],
                    }
                ],
            }
        ]
    },
    "/apis": {
        "items": [
            {
                "metadata": {"name": "events.k8s.io"},
                "versions": [
                    {
                        "version": "v1",
                        "resources": [
                            {
                                "resource": "events",
                                "singularResource": "event",
                                "responseKind": {"kind": "Event"},
                                "scope": "Namespaced",
                            }
                        ],
                    }
                ],
            },
            {
                "metadata": {"name": "vigil.dev"},
                "versions": [
                    {
                        "version": "v1alpha1",
                        "resources": [
                            {
                                "resource": "modeldeployments",
                                "singularResource": "modeldeployment",
                                "shortNames": ["md"],
                                "responseKind": {"kind": "ModelDeployment"},
                                "scope": "Namespaced",
                            }
                        ],
                    },
                    {"version": "v1alpha0", "resources": []},
                ],
            },
        ]
    },
}


class Reader(ApiReader):
    """An ApiReader whose server is a dict of paths (None: 404)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__("https://127.0.0.1:1", ssl.create_default_context(), "t")
        self.answers = {**DISCOVERY, **answers}
        self.asked: list[str] = []

    def _json(self, path: str, accept: str = "", timeout: float = 30) -> Any:
        self.asked.append(path)
        answer = self.answers.get(path)
        if isinstance(answer, int):
            body = io.BytesIO(json.dumps({"reason": "Forbidden", "message": "no"}).encode())
            raise urllib.error.HTTPError(path, answer, "", None, body)  # type: ignore[arg-type]
        if answer is None:
            raise urllib.error.HTTPError(path, 404, "", None, io.BytesIO(b"{}"))  # type: ignore[arg-type]
        return json.loads(json.dumps(answer))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("-n", "ml", "md", "wine"), Query("md", "wine", "ml", None, False)),
        (("md/wine", "-n", "ml"), Query("md", "wine", "ml", None, False)),
        (("pods", "-n", "ml", "-l", "a=b"), Query("pods", None, "ml", "a=b", False)),
        (("Service", "web", "--show-managed-fields"), Query("service", "web", None, None, True)),
        (("nodes",), Query("nodes", None, None, None, False)),
    ],
)
def test_a_type_with_a_name_or_a_selector_is_read_here(
    args: tuple[str, ...], expected: Query
) -> None:
    assert Query.parse(args) == expected


@pytest.mark.parametrize(
    "args",
    [(), ("md", "a", "b"), ("md", "-o", "yaml"), ("md", "--watch"), ("md", "a", "-l", "x=y")],
)
def test_any_other_form_is_left_to_kubectl(args: tuple[str, ...]) -> None:
    assert Query.parse(args) is None


def test_types_are_found_by_every_name_kubectl_accepts_the_core_group_first() -> None:
    reader = Reader({})
    for name in ("md", "modeldeployment", "modeldeployments", "modeldeployments.vigil.dev"):
        found = reader.resource(name)
        assert found is not None and found.version == "v1alpha1", name
    events = reader.resource("events")
    assert events is not None and events.group == ""
    assert reader.resource("events.events.k8s.io").group == "events.k8s.io"  # type: ignore[union-attr]
    assert reader.resource("po").path("ml", "p-1") == "/api/v1/namespaces/ml/pods/p-1"  # type: ignore[union-attr]
    # A cluster-scoped type ignores the namespace, as kubectl does.
    assert reader.resource("node").path("ml", None) == "/api/v1/nodes"  # type: ignore[union-attr]


def test_an_unknown_type_asks_discovery_once_more_then_says_none() -> None:
    reader = Reader({})
    assert reader.resource("kustomizations") is None
    assert reader.asked.count("/apis") == 2
    assert reader.resource("md") is not None
    assert reader.asked.count("/apis") == 2  # a known type asks nothing more


def test_objects_and_lists_come_back_as_kubectl_prints_them() -> None:
    pod = {"metadata": {"name": "p", "managedFields": [{"manager": "kubelet"}]}}
    reader = Reader(
        {
            "/api/v1/namespaces/ml/pods/p": {"apiVersion": "v1", "kind": "Pod", **pod},
            "/api/v1/namespaces/ml/pods?labelSelector=app%3Dwine": {
                "kind": "PodList",
                "apiVersion": "v1",
                "items": [json.loads(json.dumps(pod))],
            },
        }
    )
    one = reader.get(Query("pod", "p", "ml", None, False))
    assert one == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    listed = reader.get(Query("pods", None, "ml", "app=wine", False))
    assert listed is not None and listed["kind"] == "List"
    assert listed["items"] == [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}]
    kept = reader.get(Query("pod", "p", "ml", None, True))
    assert kept is not None and kept["metadata"]["managedFields"] == [{"manager": "kubelet"}]


def test_not_found_is_none_and_any_other_error_says_the_servers_reason() -> None:
    reader = Reader({"/api/v1/namespaces/ml/pods/secret": 403})
    assert reader.get(Query("pod", "gone", "ml", None, False)) is None
    with pytest.raises(ReadError, match=r"Error from server \(Forbidden\): no"):
        reader.get(Query("pod", "secret", "ml", None, False))
    with pytest.raises(ReadError, match="doesn't have a resource type"):
        reader.get(Query("widgets", None, "ml", None, False))
