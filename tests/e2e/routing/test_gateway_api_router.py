"""The Gateway API router against the real HTTPRoute schema in the local cluster.

Installs the vendored standard-channel CRDs (hack/gateway-api, idempotent
server-side apply), creates a user's HTTPRoute, moves the weights through a
rollout's traffic with the router, and reads them back with kubectl.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
import yaml

from vigil.core.rollout import Traffic
from vigil.devcluster import ClusterClient
from vigil.kube.client import Connection
from vigil.routing import GatewayAPIRouter, RoutingError, RoutingTarget
from vigil.routing.gateway_api import route_weights
from vigil.routing.kube import RoutingKubeClient


@pytest.fixture(scope="module")
def gateway_api(gateway_api_crds: None) -> None:
    """The Gateway API CRDs (installed by the shared session fixture)."""


def client_for(cluster: ClusterClient) -> RoutingKubeClient:
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    server = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    ca = server["cluster"].get("certificate-authority-data")
    return RoutingKubeClient(
        Connection(
            server=server["cluster"]["server"],
            ca_data=base64.b64decode(ca).decode() if ca else None,
            token=user["user"].get("token"),
            certificate_path=user["user"].get("client-certificate"),
            private_key_path=user["user"].get("client-key"),
        )
    )


ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: wine
spec:
  parentRefs:
    - name: public
  hostnames: ["wine.example.com"]
  rules:
    - matches:
        - path: {type: PathPrefix, value: /v2/models/wine}
      backendRefs:
        - name: wine
          port: 80
    - matches:
        - path: {type: PathPrefix, value: /other}
      backendRefs:
        - name: other
          port: 8080
"""


def weights(cluster: ClusterClient, namespace: str) -> list[list[tuple[str, int]]]:
    route = cluster.get_json("httproute", "wine", "-n", namespace)
    return [
        [(ref["name"], ref.get("weight", 1)) for ref in rule.get("backendRefs", [])]
        for rule in route["spec"]["rules"]
    ]


def test_router_sets_weights_on_a_real_httproute(cluster, namespace, gateway_api):
    cluster.apply(ROUTE, namespace=namespace)
    target = RoutingTarget("wine", namespace, stable="aaaaaaa", candidate="bbbbbbb")
    router = GatewayAPIRouter("wine")

    async def run() -> None:
        api = client_for(cluster)
        try:
            for weight in (0, 20, 50):
                await router.apply(api, target, Traffic(weight, 0, 1, 2))
                assert weights(cluster, namespace) == [
                    [("wine-aaaaaaa", 100 - weight), ("wine-bbbbbbb", weight)],
                    [("other", 1)],
                ]
            # Applying the same traffic again writes nothing (resourceVersion unchanged).
            before = cluster.get_json("httproute", "wine", "-n", namespace)["metadata"]
            await router.apply(api, target, Traffic(50, 0, 1, 2))
            after = cluster.get_json("httproute", "wine", "-n", namespace)["metadata"]
            assert after["resourceVersion"] == before["resourceVersion"]
            # Promotion: no candidate, so the route names the Service `wine` alone at
            # 100, which always selects the serving revision (revision Services may go).
            promoted = RoutingTarget("wine", namespace, stable="bbbbbbb")
            await router.apply(api, promoted, Traffic(0, 0, 0, 2))
            assert weights(cluster, namespace)[0] == [("wine", 100)]
            route = await api.get("HTTPRoute", namespace, "wine")
            assert route is not None
            assert route_weights(route, promoted, claimed=frozenset()) == {"wine": 100}
            # The user's other fields are untouched.
            assert route["spec"]["hostnames"] == ["wine.example.com"]
            assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/v2/models/wine"
        finally:
            await api.close()

    asyncio.run(run())


def test_router_reports_a_missing_route(cluster, namespace, gateway_api):
    target = RoutingTarget("wine", namespace, stable="aaaaaaa", candidate="bbbbbbb")

    async def run() -> str:
        api = client_for(cluster)
        try:
            await GatewayAPIRouter("absent").apply(api, target, Traffic(20, 0, 1, 2))
        except RoutingError as error:
            return str(error)
        finally:
            await api.close()
        return ""

    assert "does not exist" in asyncio.run(run())


def test_schema_rejects_an_out_of_range_weight(cluster, namespace, gateway_api):
    """The vendored schema is the real one: it validates what the router writes."""
    cluster.apply(ROUTE, namespace=namespace)
    patch = {"spec": {"rules": [{"backendRefs": [{"name": "wine", "port": 80, "weight": -1}]}]}}
    result = cluster.kubectl(
        "patch",
        "httproute",
        "wine",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert result.returncode != 0
    assert "weight" in result.stderr
