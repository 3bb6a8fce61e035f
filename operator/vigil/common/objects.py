"""Typed read-only views over the raw objects the API server returns.

In the manner of kopf's ``Body``, ``Meta``, ``Spec`` and ``Status``: the raw
mapping stays what it is (it is what gets cached, compared and written
back), and a view answers the questions the code asks of it, with the
API's meaning of an absent field (no labels, generation 0, not being
deleted) instead of a chain of ``(x.get(...) or {})`` at every use.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.common.times import parse_time

_EMPTY: Mapping[str, Any] = {}


def section(value: Any, *path: str) -> Mapping[str, Any]:
    """The mapping at ``path`` under ``value``; empty where a step is absent or not a mapping."""
    current: Any = value
    for key in path:
        if not isinstance(current, Mapping):
            return _EMPTY
        current = current.get(key)
    return current if isinstance(current, Mapping) else _EMPTY


def items(value: Any, *path: str) -> Sequence[Any]:
    """The list at ``path`` under ``value`` (its last key names it); empty when absent."""
    *parents, last = path
    found = section(value, *parents).get(last)
    return found if isinstance(found, list | tuple) else ()


#: Leaves ``copied`` returns as they are, without a call per leaf.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def copied(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, tuples and plain values).

    What ``copy.deepcopy`` gives for such data, several times faster (no memo):
    every manifest the reconcile stamps is copied once per cycle.
    """
    if isinstance(value, dict):
        return {key: item if type(item) in _PLAIN else copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [item if type(item) in _PLAIN else copied(item) for item in value]
    if type(value) is tuple:
        return tuple(item if type(item) in _PLAIN else copied(item) for item in value)
    return value


def integer_or_zero(value: Any) -> int:
    """An integer field as the API means it: 0 where it is absent or not a number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Meta:
    """``metadata`` of any object."""

    raw: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.raw.get("namespace") or "")

    @property
    def uid(self) -> str:
        return str(self.raw.get("uid") or "")

    @property
    def generation(self) -> int:
        return integer_or_zero(self.raw.get("generation"))

    @property
    def resource_version(self) -> str:
        return str(self.raw.get("resourceVersion") or "")

    @property
    def labels(self) -> Mapping[str, str]:
        return section(self.raw, "labels")

    @property
    def annotations(self) -> Mapping[str, str]:
        return section(self.raw, "annotations")

    @property
    def created(self) -> datetime.datetime | None:
        """``creationTimestamp`` (None: absent or unreadable)."""
        return parse_time(self.raw.get("creationTimestamp"))

    @property
    def deleting(self) -> bool:
        """A deletion was asked (finalizers or garbage collection may still hold it)."""
        return bool(self.raw.get("deletionTimestamp"))

    def controlled_by(self, uid: str) -> bool:
        """Whether this object's controller reference points at the object with ``uid``."""
        return any(
            isinstance(ref, Mapping) and ref.get("uid") == uid and ref.get("controller")
            for ref in items(self.raw, "ownerReferences")
        )

    def owned_by(self, uid: str) -> bool:
        """Whether any owner reference (controller or not) points at ``uid``."""
        return any(
            isinstance(ref, Mapping) and ref.get("uid") == uid
            for ref in items(self.raw, "ownerReferences")
        )


@dataclass(frozen=True)
class Body:
    """A whole object: its kind, metadata, spec, status and (ConfigMaps) data."""

    raw: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.raw.get("kind") or "")

    @property
    def meta(self) -> Meta:
        return Meta(section(self.raw, "metadata"))

    @property
    def spec(self) -> Mapping[str, Any]:
        return section(self.raw, "spec")

    @property
    def status(self) -> Mapping[str, Any]:
        return section(self.raw, "status")

    @property
    def data(self) -> Mapping[str, str]:
        """A ConfigMap's (or Secret's) ``data``."""
        return section(self.raw, "data")

    def has_key(self, key: str) -> bool:
        """A ConfigMap holds ``key`` in ``data`` or ``binaryData``."""
        return key in self.data or key in section(self.raw, "binaryData")

    def value(self, key: str) -> str | bytes | None:
        """A ConfigMap's value under ``key``: text from ``data``, bytes from ``binaryData``."""
        text = self.data.get(key)
        if text is not None:
            return str(text)
        encoded = section(self.raw, "binaryData").get(key)
        return None if encoded is None else base64.b64decode(encoded)


def body(raw: Mapping[str, Any] | None) -> Body:
    """A view over ``raw`` (None reads as an empty object)."""
    return Body(raw if raw is not None else _EMPTY)
