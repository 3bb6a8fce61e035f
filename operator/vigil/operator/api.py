"""What the operator needs from the Kubernetes API, as a protocol.

:class:`vigil.routing.kube.RoutingKubeClient` (the kube adapter plus
HTTPRoutes and patches) is the one the running operator uses; the unit
tests give an in-memory one. Code above the adapter names this protocol,
never the concrete client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from vigil.routing.base import RoutingApi


class Api(RoutingApi, Protocol):
    """A router's reads and patches, plus server-side applies, deletes, status and Events."""

    async def list(
        self, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]: ...

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    async def delete(self, kind: str, namespace: str, name: str) -> None: ...

    async def patch_status(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def create_event(self, manifest: Mapping[str, Any]) -> bool: ...
