"""Watch a namespace's Services and HTTPRoutes: does a route ever name a Service that is gone?

Two ``kubectl get --watch`` streams record every change of the Services and
of the HTTPRoutes, each with its resourceVersion. On the test cluster (one
etcd behind one API server) a resourceVersion is the etcd revision of the
change: one counter over all kinds, and a DELETED event carries the
revision of the deletion. The two streams therefore merge into a single
time line, and replaying it checks every moment, not samples taken by a
poll that a short gap would slip through.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from vigil.devcluster import ClusterClient


@dataclass(frozen=True)
class Change:
    """One watch event, reduced."""

    revision: int
    kind: str  # "Service" or "HTTPRoute"
    type: str  # ADDED, MODIFIED, DELETED
    name: str
    #: HTTPRoute: the Services its rules name, with their weights (0 still names one).
    backends: tuple[tuple[str, str], ...] = ()
    #: When the watch delivered it (time.monotonic()).
    seen_at: float = 0.0


def _parse(kind: str, line: str, seen_at: float) -> Change | None:
    """One line of ``kubectl get --watch --output-watch-events -o json`` (an event a line)."""
    try:
        event = json.loads(line)
        metadata = event["object"]["metadata"]
        revision = int(metadata["resourceVersion"])
    except (ValueError, KeyError, TypeError):
        return None
    backends = tuple(
        (str(ref.get("name")), str(ref.get("weight", 1)))
        for rule in (event["object"].get("spec") or {}).get("rules") or ()
        for ref in rule.get("backendRefs") or ()
    )
    return Change(
        revision, kind, str(event.get("type")), str(metadata.get("name")), backends, seen_at
    )


@dataclass
class _Stream:
    kind: str
    process: subprocess.Popen[str]
    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def read(self, out: IO[str]) -> None:
        for line in out:
            change = _parse(self.kind, line.rstrip("\n"), time.monotonic())
            if change is None:
                self.errors.append(line)
            else:
                self.changes.append(change)


class BackendWatch:
    """Watches from ``start()`` to ``stop()``; then ``violations()`` and ``margins()``."""

    def __init__(self, cluster: ClusterClient, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._streams: list[_Stream] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> BackendWatch:
        for kind, resource in (
            ("Service", "services"),
            ("HTTPRoute", "httproutes.gateway.networking.k8s.io"),
        ):
            process = subprocess.Popen(
                [
                    self.cluster.kubectl_binary,
                    "--kubeconfig",
                    self.cluster.kubeconfig,
                    "get",
                    resource,
                    "-n",
                    self.namespace,
                    "--watch",
                    "--output-watch-events",
                    "-o",
                    "json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            stream = _Stream(kind, process)
            assert process.stdout is not None
            thread = threading.Thread(target=stream.read, args=(process.stdout,), daemon=True)
            thread.start()
            self._streams.append(stream)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        time.sleep(1.0)  # the last changes reach the watches
        for stream in self._streams:
            if stream.process.poll() is not None:
                stream.errors.append(f"the {stream.kind} watch ended early")
            stream.process.terminate()
            stream.process.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=10)

    def changes(self) -> list[Change]:
        """Every change seen, in the order etcd made them."""
        return sorted((c for s in self._streams for c in s.changes), key=lambda c: c.revision)

    def errors(self) -> list[str]:
        return [line for stream in self._streams for line in stream.errors]

    def violations(self) -> list[str]:
        """In words: each Service deleted while a route named it, and each change of a
        route (the operator's writes) that named a Service that did not exist.

        A route created before the Services it names (a person applying it before
        the ModelDeployment) is not counted: only what the operator does is.
        """
        services: set[str] = set()
        routes: dict[str, tuple[tuple[str, str], ...]] = {}
        found: list[str] = []
        for change in self.changes():
            if change.kind == "Service" and change.type == "DELETED":
                services.discard(change.name)
                found += [
                    f"revision {change.revision}: Service {change.name} deleted while "
                    f"HTTPRoute {route} sends {dict(backends)[change.name]} to it"
                    for route, backends in routes.items()
                    if change.name in dict(backends)
                ]
            elif change.kind == "Service":
                services.add(change.name)
            elif change.type == "DELETED":
                routes.pop(change.name, None)
            else:
                routes[change.name] = change.backends
                missing = [name for name, _ in change.backends if name not in services]
                if change.type == "MODIFIED" and missing:
                    found.append(
                        f"revision {change.revision}: HTTPRoute {change.name} names {missing}, "
                        "which do not exist"
                    )
        return found

    def margins(self) -> dict[str, float]:
        """Per deleted Service that a route named: seconds from the route leaving it to its
        deletion, as the watches delivered them (negative would be a violation)."""
        left: dict[str, float] = {}
        named: set[str] = set()
        margins: dict[str, float] = {}
        for change in self.changes():
            if change.kind == "HTTPRoute" and change.type != "DELETED":
                now_named = {name for name, _ in change.backends}
                for name in named - now_named:
                    left[name] = change.seen_at
                named = now_named
            elif change.kind == "Service" and change.type == "DELETED" and change.name in left:
                margins[change.name] = round(change.seen_at - left.pop(change.name), 3)
        return margins
