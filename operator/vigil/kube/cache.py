"""The objects the operator already watches, kept so that reconciles need not read them again.

Why: kopf already watches every one of those objects, and reading them
afresh in each reconcile was most of the operator's traffic at scale
(docs/design/api-traffic.md). The watch streams feed this cache; the client
(vigil.kube.client.KubeClient) answers reads from it and records its own
writes in it.

Freshness rules, so that a cached copy is never older than what the operator
itself last wrote or saw:
- a copy replaces another only when its resourceVersion is newer (both are
  etcd revisions, integers, in every API server in use; when one is not an
  integer the later arrival wins);
- the answer to the operator's own write (apply, status patch) is recorded
  at once: the next reconcile sees it even when the watch event is still on
  its way;
- a deletion (watched, or the operator's own) leaves a tombstone for a
  while, so that a late event of the deleted object does not bring it back.

What is served: a GET of a cached kind when the object is in the cache (a
miss still goes to the API server: a user's reference ConfigMap, a Service
someone else owns), and a LIST whose label selector is exactly the label the
kind's watch filters on (``label=value``), since the watch sees every object
such a LIST can return. The cache is filled before any handler runs (kopf
blocks handlers until every indexed kind has been listed once, see
vigil.operator.handlers).

A watch that cannot resume (its resourceVersion expired, e.g. after an API
server restart) lists everything again, and kopf reports no DELETED event
for what vanished in between: the cache would keep a ghost. So a listing
(announced by the watch, see vigil.operator.runtime.announce_listings: also
one that found nothing, which no listed object would tell) makes reads of
that kind in that namespace (every namespace, for a cluster-wide watch) go
to the API server while it runs and, once complete, until a window of
LISTING_SECONDS from its start closes; then whatever the listing did not
show is dropped (client-go's informers "replace" their store the same way),
and handed out by `gone` (no event tells the owner of a deleted child). A
listing that failed (not complete within that window) drops nothing. An
operator restarting reads afresh for its first minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from vigil.common.objects import Body, section
from vigil.common.relisting import LISTING_SECONDS as LISTING_SECONDS  # its window, re-exported
from vigil.common.relisting import Relistings

Key = tuple[str, str, str]  # kind, namespace, name

#: How long a deletion is remembered (late events of the object arrive well within it).
TOMBSTONE_SECONDS = 120.0


def resource_version(body: Any) -> int | None:
    """An object's resourceVersion as the integer it is (None: absent, not one, no object)."""
    if not isinstance(body, Mapping):
        return None
    value = section(body, "metadata").get("resourceVersion")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without managedFields (a third of a Deployment's size; nothing reads them)."""
    metadata = section(body, "metadata")
    if "managedFields" not in metadata:
        return dict(body)
    return {
        **body,
        "metadata": {key: value for key, value in metadata.items() if key != "managedFields"},
    }


@dataclass(frozen=True, slots=True)
class _Entry:
    """A cached object as compact JSON, with what the cache itself looks at.

    JSON text takes a fifth of the memory of the same dicts, and decoding it is the
    copy every reader needs anyway (callers change what they read).
    """

    version: int | None
    label: str | None
    data: bytes

    def body(self) -> dict[str, Any]:
        return expand(self.data)


def compact(body: Mapping[str, Any]) -> bytes:
    """The object as compact JSON, without managedFields: how long-lived copies are kept."""
    return orjson.dumps(_slim(body))


def expand(data: bytes) -> dict[str, Any]:
    """A fresh object from `compact`'s bytes."""
    decoded: dict[str, Any] = orjson.loads(data)
    return decoded


class ObjectCache:
    """Last known copy of each watched object of the kinds given, by kind, namespace and name.

    ``kinds`` maps each cached kind to the label its watch filters on (every
    object of the kind carrying that label is watched), or to ``None`` when
    every object of the kind is watched.
    """

    def __init__(
        self,
        kinds: Mapping[str, str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kinds = dict(kinds)
        self._clock = clock
        self._objects: dict[Key, _Entry] = {}
        #: (kind, namespace, value of the kind's watch label) -> names: what a LIST returns.
        self._by_label: dict[Key, set[str]] = {}
        #: Deleted objects -> (last resourceVersion, when), oldest first.
        self._tombstones: dict[Key, tuple[int | None, float]] = {}
        #: Per kind, when each object was last shown or written, and the listings.
        self._relisted = {kind: Relistings(clock) for kind in self.kinds}
        #: Dropped as relistings no longer showed them, until `gone` hands them out.
        self._gone: list[tuple[str, _Entry]] = []

    def __len__(self) -> int:
        return len(self._objects)

    @staticmethod
    def _key(kind: str, body: Mapping[str, Any]) -> Key:
        meta = Body(body).meta
        return kind, meta.namespace, meta.name

    def _label(self, kind: str, body: Mapping[str, Any]) -> str | None:
        """The value of the label the kind's watch filters on (None: not filtered, or absent)."""
        label = self.kinds.get(kind)
        if label is None:
            return None
        value = Body(body).meta.labels.get(label)
        return None if value is None else str(value)

    def _remove(self, key: Key) -> None:
        self._relisted[key[0]].forget(key[1:])
        previous = self._objects.pop(key, None)
        if previous is not None and previous.label is not None:
            label_key = (key[0], key[1], previous.label)
            names = self._by_label.get(label_key)
            if names is not None:
                names.discard(key[2])
                if not names:
                    del self._by_label[label_key]

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event (``None`` for a listed object, ADDED, MODIFIED, DELETED)."""
        if kind not in self.kinds:
            return
        key = self._key(kind, body)
        if event_type == "DELETED":
            self._bury(key, resource_version(body))
            return
        self.store(kind, body)

    def listing_started(self, kind: str, namespace: str | None) -> None:
        """A watch of this kind starts by listing it in a namespace (None: cluster-wide)."""
        if kind in self.kinds:
            self._relisted[kind].listing_started(namespace)

    def listing_done(self, kind: str, namespace: str | None) -> None:
        """That listing is complete: open its window, from its start."""
        if kind in self.kinds:
            self._relisted[kind].listing_done(namespace)

    def _trusted(self, kind: str, namespace: str) -> bool:
        """False while a relisting of this kind covering the namespace runs; the windows
        that are over drop the objects their listings did not show."""
        self._drop_ghosts(kind)
        return not self._relisted[kind].listing_open(namespace)

    def _drop_ghosts(self, kind: str) -> None:
        for namespace, name in self._relisted[kind].ghosts():
            entry = self._objects.get((kind, namespace, name))
            self._remove((kind, namespace, name))
            if entry is not None:
                self._gone.append((kind, entry))

    def gone(self) -> list[tuple[str, dict[str, Any]]]:
        """The objects relistings no longer showed (kind, last copy), dropped since the last
        call: deleted while their watch was away, which no event tells."""
        for kind in self._relisted:
            self._drop_ghosts(kind)
        gone, self._gone = self._gone, []
        return [(kind, entry.body()) for kind, entry in gone]

    def store(self, kind: str, body: Mapping[str, Any]) -> None:
        """Keep this copy unless the cache holds a newer one or saw a later deletion."""
        if kind not in self.kinds or not body:
            return
        key = self._key(kind, body)
        version = resource_version(body)
        tombstone = self._tombstones.get(key)
        if tombstone is not None:
            deleted_at = tombstone[0]
            if version is not None and deleted_at is not None and version <= deleted_at:
                return  # a late event of the deleted object: do not bring it back
            del self._tombstones[key]
        current = self._objects.get(key)
        if current is not None:
            known = current.version
            if version is not None and known is not None and version <= known:
                self._relisted[kind].seen(key[1:])  # seen again; the cached copy is as new
                return
        self._remove(key)
        label = self._label(kind, body)
        self._objects[key] = _Entry(version, label, compact(body))
        self._relisted[kind].seen(key[1:])
        if label is not None:
            self._by_label.setdefault((kind, key[1], label), set()).add(key[2])

    def forget(self, kind: str, namespace: str, name: str, deleted_at: int | None = None) -> None:
        """The operator deleted the object: drop it, and ignore copies not newer than the
        deletion (``deleted_at``: the resourceVersion of the DELETE's answer) or the last."""
        key = (kind, namespace, name)
        current = self._objects.get(key)
        versions = [v for v in (deleted_at, current and current.version) if v is not None]
        self._bury(key, max(versions) if versions else None)

    def _bury(self, key: Key, version: int | None) -> None:
        self._remove(key)
        # Oldest first (re-inserted at the end): expired ones are dropped from the front,
        # so a namespace's deletion (thousands of events) is not quadratic.
        self._tombstones.pop(key, None)
        now = self._clock()
        while self._tombstones:
            old, (_, at) = next(iter(self._tombstones.items()))
            if at >= now - TOMBSTONE_SECONDS:
                break
            del self._tombstones[old]
        self._tombstones[key] = (version, now)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A fresh copy of the cached object (the caller may change it), or None when it is
        not cached (the caller asks the API server)."""
        if not self._trusted(kind, namespace):
            return None
        entry = self._objects.get((kind, namespace, name))
        return None if entry is None else entry.body()

    def serves_list(self, kind: str, namespace: str, label_selector: str) -> bool:
        """Whether the watch sees every object such a LIST returns (``<watch label>=<value>``)
        and no relisting is under way."""
        label = self.kinds.get(kind)
        if label is None:
            return False
        name, equals, value = label_selector.partition("=")
        return (
            name == label
            and bool(equals)
            and bool(value)
            and not any(mark in value for mark in ",=!()")
            and self._trusted(kind, namespace)
        )

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Fresh copies of the cached objects of a kind in a namespace with that label value
        (see serves_list)."""
        value = label_selector.partition("=")[2]
        names = self._by_label.get((kind, namespace, value)) or ()
        return [self._objects[(kind, namespace, name)].body() for name in sorted(names)]
