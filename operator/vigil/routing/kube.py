"""The kube adapter, plus what routing needs: HTTPRoutes and merge/JSON patches.

:class:`vigil.kube.client.KubeClient` knows the operator's own kinds and
writes them by server-side apply. Routers also touch an object the user
owns (an HTTPRoute), where a merge patch of only the fields they change,
guarded by ``resourceVersion``, is the right write. This subclass adds that
without changing the shared adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.kube.client import KubeClient

#: Kinds beyond the adapter's own: kind -> (API path prefix, plural).
EXTRA_RESOURCES: dict[str, tuple[str, str]] = {
    "HTTPRoute": ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
}


class RoutingKubeClient(KubeClient):
    """KubeClient + HTTPRoutes + ``patch`` + discovery (satisfies
    :class:`vigil.routing.base.RoutingApi` and :class:`vigil.routing.base.DiscoveryApi`)."""

    @staticmethod
    def _path(kind: str, namespace: str, name: str | None = None) -> str:
        if kind not in EXTRA_RESOURCES:
            return KubeClient._path(kind, namespace, name)
        prefix, plural = EXTRA_RESOURCES[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any] | list[Any],
        *,
        content_type: str = "application/merge-patch+json",
    ) -> dict[str, Any]:
        """A merge patch (default) or JSON patch (``application/json-patch+json``); a watched
        object's answer is kept as its cached copy (a reconcile right after reads it)."""
        result = await self._request(
            "PATCH", self._path(kind, namespace, name), body=patch, content_type=content_type
        )
        if result and self.cache is not None:
            self.cache.store(kind, result)
        return result or {}

    async def served_resources(self, group_version: str) -> frozenset[str] | None:
        """The resources ``/apis/<group_version>`` lists (``httproutes``...); None on a 404.

        A discovery read: every authenticated client may make it (ClusterRole
        ``system:discovery``), so it needs no RBAC rule of the operator's.
        """
        found = await self._request("GET", f"/apis/{group_version}")
        if found is None:
            return None
        return frozenset(str(r.get("name", "")) for r in found.get("resources") or [])
