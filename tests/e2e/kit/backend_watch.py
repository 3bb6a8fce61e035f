"""Watch a namespace's Services and HTTPRoutes: does a route ever name a Service that is gone?

Two ``kubectl get --watch`` streams record every change of the Services and
of the HTTPRoutes, each with its resourceVersion. On the test cluster (one
etcd behind one API server) a resourceVersion is the etcd revision of the
change: one counter over all kinds, and a DELETED event carries the
revision of the deletion. The two streams therefore merge into a single
time line, and replaying it checks every moment, not samples taken by a
poll that a short gap would slip through.

``stop()`` ends the streams only once they delivered everything before it: it
writes a sentinel of each kind (a Service and an HTTPRoute no route or
ModelDeployment uses) and waits until each stream has seen its sentinel's
revision, so no late event is lost. The sentinels are not among the changes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

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


#: What the two streams watch: the Services and the HTTPRoutes.
_RESOURCES = ("services", "httproutes.gateway.networking.k8s.io")
#: The name of the objects ``stop()`` writes to learn that the streams caught up.
SENTINEL = "backend-watch-sentinel"


def _sentinels(nonce: str) -> list[dict[str, Any]]:
    """A headless Service without a selector and an HTTPRoute without parents: nothing
    serves, routes or reconciles them. ``nonce`` makes each write a change."""
    metadata = {"name": SENTINEL, "annotations": {"vigil.test/backend-watch-stop": nonce}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": {},
        },
    ]


@dataclass
class _Stream:
    kind: str
    process: subprocess.Popen[str]
    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The highest revision of the sentinel this stream delivered (0: none yet).
    sentinel: int = 0

    def read(self, out: IO[str]) -> None:
        for line in out:
            change = _parse(self.kind, line.rstrip("\n"), time.monotonic())
            if change is None:
                self.errors.append(line)
            elif change.name == SENTINEL:
                self.sentinel = max(self.sentinel, change.revision)
            else:
                self.changes.append(change)


class BackendWatch:
    """Watches from ``start()`` to ``stop()``; then ``violations()`` and ``margins()``."""

    def __init__(self, cluster: ClusterClient, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._streams: list[_Stream] = []
        self._threads: list[threading.Thread] = []
        self._errors: list[str] = []

    def start(self) -> BackendWatch:
        for kind, resource in zip(("Service", "HTTPRoute"), _RESOURCES, strict=True):
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

    def stop(self, timeout: float = 30.0) -> None:
        """End the streams once each delivered every change made before this call; one
        that had not within ``timeout`` seconds is among the ``errors()``."""
        self._catch_up(timeout)
        for stream in self._streams:
            if stream.process.poll() is not None:
                stream.errors.append(f"the {stream.kind} watch ended early")
            stream.process.terminate()
            stream.process.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=10)
        self.cluster.kubectl(
            "-n",
            self.namespace,
            "delete",
            ",".join(_RESOURCES),
            SENTINEL,
            "--ignore-not-found",
            check=False,
        )

    def _catch_up(self, timeout: float) -> None:
        """Write the sentinels, after every change the test made (their revisions are
        higher), and wait until each stream delivered its own: a watch delivers its events
        in revision order, so it then delivered every earlier one."""
        items = {"apiVersion": "v1", "kind": "List", "items": _sentinels(str(time.time_ns()))}
        written = self.cluster.kubectl(
            "-n",
            self.namespace,
            "apply",
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(items),
            check=False,
        )
        if written.returncode != 0:
            self._errors.append(f"could not write the sentinels: {written.stderr.strip()}")
            return
        out = json.loads(written.stdout)
        revisions = {
            item["kind"]: int(item["metadata"]["resourceVersion"])
            for item in out.get("items") or [out]
        }

        def behind() -> list[_Stream]:
            return [
                s
                for s in self._streams
                if s.sentinel < revisions[s.kind] and s.process.poll() is None
            ]

        deadline = time.monotonic() + timeout
        while behind() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._errors += [
            f"the {s.kind} watch had not delivered its sentinel (revision "
            f"{revisions[s.kind]}) {timeout:.0f}s after it was written (last delivered: "
            f"{max([s.sentinel, *(c.revision for c in s.changes)])}): later changes may be "
            "missing"
            for s in behind()
        ]

    def changes(self) -> list[Change]:
        """Every change seen, in the order etcd made them."""
        return sorted((c for s in self._streams for c in s.changes), key=lambda c: c.revision)

    def errors(self) -> list[str]:
        return self._errors + [line for stream in self._streams for line in stream.errors]

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
