"""Request identity: the id every prediction gets, and what a sidecar-made id says.

The id of an inference request is, in order: the client's ``X-Request-Id``
header, the body's top-level ``id`` (Open Inference Protocol and KServe V1),
or one the sidecar makes. A sidecar-made id names the revision that served
the prediction, the feedback address of the pod that holds it and when it
was made, so that a label arriving at any pod can be routed to the owner,
and judged "lost" or "expired" (not "unknown") when the owner is gone::

    vg1.<revision>.<address hex>.<unix ms hex>.<sequence hex>.<check>

The check (4 hex digits of a CRC of the rest) keeps client ids that happen
to look alike from being read as sidecar ids. Nothing here is secret: the
id routes a label only to addresses in the current peer set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from vigil.common.uris import host_port

__all__ = [
    "MAX_ID_LENGTH",
    "IdMaker",
    "SidecarId",
    "body_id",
    "clean_id",
    "id_key",
    "parse_sidecar_id",
]

#: Longer ids (or ids with characters outside visible ASCII) are not taken from a client.
MAX_ID_LENGTH = 256
_PREFIX = "vg1"


def clean_id(value: object) -> str | None:
    """A client-supplied id if usable as a header value and a key, else None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH:
        return None
    if not all(33 <= ord(c) <= 126 for c in text):
        return None
    return text


def body_id(body: bytes) -> str | None:
    """The top-level ``id`` of a JSON request body (OIP and KServe V1), if any.

    A byte search first: most bodies carry no id and are not parsed here (the
    monitoring task parses them later, off the latency path).
    """
    if b'"id"' not in body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    return clean_id(doc.get("id"))


def id_key(request_id: str) -> int:
    """The 64-bit key the join store files an id under (the same in every pod)."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")


def _check(text: str) -> str:
    # CRC-32 (C, a fraction of a microsecond): the check only tells look-alikes apart.
    return f"{zlib.crc32(text.encode()) & 0xFFFF:04x}"


def encode_address(address: str) -> str:
    """``10.1.2.3:8001`` -> ``0a0102031f41`` (IPv6 addresses: 32 + 4 hex digits)."""
    host, _, port = address.rpartition(":")
    ip = ipaddress.ip_address(host.strip("[]"))
    return ip.packed.hex() + f"{int(port):04x}"


def decode_address(text: str) -> str | None:
    """The inverse of :func:`encode_address`; None for anything else."""
    if len(text) not in (12, 36):
        return None
    try:
        packed = bytes.fromhex(text[:-4])
        port = int(text[-4:], 16)
        ip = ipaddress.ip_address(packed)
    except ValueError:
        return None
    return host_port(str(ip), port)


@dataclass(frozen=True, slots=True)
class SidecarId:
    """What a sidecar-made id says."""

    revision: str
    owner: str  # host:port of the owner's feedback endpoint ("" when it had none)
    served_at: float  # unix seconds


def parse_sidecar_id(request_id: str) -> SidecarId | None:
    """Read a sidecar-made id; None for client ids (and for anything forged badly)."""
    if not request_id.startswith(_PREFIX + "."):
        return None
    parts = request_id.split(".")
    if len(parts) != 6:
        return None
    body, check = request_id.rpartition(".")[0], parts[5]
    if _check(body) != check:
        return None
    _, revision, address, millis, _, _ = parts
    try:
        served_at = int(millis, 16) / 1000.0
    except ValueError:
        return None
    owner = decode_address(address) if address != "-" else ""
    if owner is None:
        return None
    return SidecarId(revision, owner, served_at)


class IdMaker:
    """Makes unique ids for one sidecar process (a counter; the time tells processes apart)."""

    def __init__(self, revision: str, address: str, clock: Callable[[], float] = time.time) -> None:
        revision = revision.replace(".", "_") or "-"
        self._head = f"{_PREFIX}.{revision}.{encode_address(address) if address else '-'}."
        self._counter = itertools.count()
        self._clock = clock

    def make(self) -> str:
        body = f"{self._head}{int(self._clock() * 1000):x}.{next(self._counter):x}"
        return f"{body}.{_check(body)}"
