"""I/O adapter for the Kubernetes API (reads, server-side apply, deletes, status patches)."""

from vigil.kube.client import Connection, KubeClient, KubeError

__all__ = ["Connection", "KubeClient", "KubeError"]
