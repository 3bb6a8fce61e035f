"""Request identity: the id every prediction gets, and what a sidecar-made id says.

The id of an inference request is, in order: the body's top-level ``id``
(Open Inference Protocol and KServe V1), the client's ``X-Request-Id`` header
(gateways add or replace it: Proxy.identify), or one the sidecar makes. A
sidecar-made id names the revision that served the prediction, the feedback
address of the pod that holds it and when it was made, so that a label
arriving at any pod can be routed to the owner, and judged "lost" or
"expired" (not "unknown") when the owner is gone::

    vg1.<revision>.<address hex>.<unix ms hex>.<sequence hex>.<check>

The check (4 hex digits of a CRC of the rest) keeps client ids that happen
to look alike from being read as sidecar ids. Nothing here is secret: the
id routes a label only to addresses in the current peer set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
import sys
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


# The pieces of JSON the scan reads, as byte patterns (linear: no backtracking).
#: Possessive quantifiers match wrongly before Python 3.11.5 (CPython gh-106052: the scan
#: missed ids a parse finds); there the same patterns are spelled with atomic groups, which
#: match alike and cost more (a batch of short strings ~1.6 times as long).
POSSESSIVE = sys.version_info >= (3, 11, 5)


@dataclass(frozen=True)
class _Patterns:
    string: bytes
    #: A top-level number or literal (blanks after it included).
    literal: bytes
    #: What lies inside an array or object, nested at most ``nesting`` deep: the match stops
    #: at the bracket that closes it (or at one opening a value nested deeper).
    balanced: bytes


def scan_patterns(possessive: bool, nesting: int = 8) -> _Patterns:
    def once(repeated: bytes) -> bytes:
        """``repeated`` (ending in ``*``) matched as far as it goes, never given back."""
        return repeated + b"+" if possessive else b"(?>" + repeated + b")"

    string = rb'"' + once(rb'[^"\\]*') + once(rb"(?:\\." + once(rb'[^"\\]*') + rb")*") + rb'"'
    plain = once(rb'[^"\[\]{}]*')  # numbers, literals, commas, colons, blanks
    flat = plain + once(rb"(?:" + string + plain + rb")*")
    balanced = flat
    for _ in range(nesting):
        balanced = flat + once(rb"(?:[\[{]" + balanced + rb"[\]}]" + flat + rb")*")
    return _Patterns(string, once(rb'[^"\[\]{},]*'), balanced)


def _balanced(nesting: int) -> bytes:
    """The scan's ``balanced`` pattern at another depth (the tests narrow it)."""
    return scan_patterns(POSSESSIVE, nesting).balanced


_WS = rb"[ \t\n\r]*"
_PATTERNS = scan_patterns(POSSESSIVE)
_OPEN = re.compile(_WS + rb"\{")
_KEY = re.compile(_WS + rb"(" + _PATTERNS.string + rb")" + _WS + rb":" + _WS, re.DOTALL)
#: How far the key regex reads: a longer key goes by memchr (the regex: ~6 ns a byte).
_KEY_WINDOW = 4096
_BLANKS = re.compile(_WS)
_COLON = re.compile(_WS + rb":" + _WS)
_STRING_RE = re.compile(_PATTERNS.string, re.DOTALL)
_LITERAL = re.compile(_PATTERNS.literal)
_SEPARATOR = re.compile(_WS + rb"([,}])")
_BALANCED = re.compile(_PATTERNS.balanced, re.DOTALL)
#: The regex reads at most this much in one go: past it, brackets are counted instead
#: (between two strings), which crosses a tensor of numbers several times faster.
_CHUNK = 16 * 1024
#: The scan runs before forwarding, on the event loop, so its work is bounded: it reads
#: no further than MAX_SCAN_BYTES into the body, and stops past MAX_STRING_WORK, the bytes
#: of stretches holding strings it crossed (the regex reads them at ~10-20 ns a byte,
#: numbers between the strings alike), each top-level key and each escape counting as
#: many bytes as it costs. 1 MiB: a KServe V1 batch of ~12,000 object rows (iris-like) or
#: a BYTES tensor of ~50,000 short strings keeps its id; the worst case (2 MiB of short
#: strings, nested arrays or escapes) ~15-21 ms, measured on a busy machine. Stretches of
#: numbers alone go at ~1 ms per MiB, long strings at memory speed. Past the bounds the
#: request takes the header's id, or a new one.
MAX_SCAN_BYTES = 2 * 1024 * 1024
MAX_STRING_WORK = 1024 * 1024
_KEY_WORK = 256
_ESCAPE_WORK = 32
#: How far the id's own value is read: an id is 256 characters at most, 6 bytes each
#: escaped; blanks may follow a number. A value not ending within it is no id.
_ID_WINDOW = 64 * 1024


class _GaveUp(Exception):
    """The scan reached its bound before the top-level ``id``."""


def body_id(body: bytes) -> str | None:
    """The top-level ``id`` of a JSON request body (OIP and KServe V1), if any.

    A byte search first: most bodies carry no id. Those that do are scanned, not
    parsed: nested values (tensors, rows) are skipped whole, the scan stops at the
    first top-level key ``id`` and only its value is decoded; parsing the rest waits
    for the monitoring task, off the latency path. The same id as parsing the whole
    body gives, but for a body that is not valid JSON (a parser finds no id in it,
    the scan may), a repeated top-level ``id`` (a parser takes the last one) and an id
    past the scan's bound (MAX_SCAN_BYTES, MAX_STRING_WORK): None then.
    """
    if body.find(b'"id"', 0, MAX_SCAN_BYTES) < 0:
        return None
    opened = _OPEN.match(body, 0, MAX_SCAN_BYTES)
    if opened is None:
        return None
    # The id first, as OIP clients send it: taken without setting a scan up.
    key = _KEY.match(body, opened.end(), opened.end() + _KEY_WINDOW)
    if key is not None and key.group(1) == b'"id"':
        return _value_id(body, key.end())
    first = (key.group(1), key.end()) if key is not None else None
    try:
        return _Scan(body).top_level_id(opened.end(), first)
    except _GaveUp:
        return None


class _Scan:
    """One body's scan: how far it may read (``end``) and the string work done so far."""

    __slots__ = ("body", "end", "work")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.end = min(len(body), MAX_SCAN_BYTES)
        self.work = 0

    def charge(self, work: int) -> None:
        self.work += work
        if self.work > MAX_STRING_WORK:
            raise _GaveUp

    def top_level_id(self, pos: int, key: tuple[bytes, int] | None) -> str | None:
        """The id of the top-level key ``id``; the first key is at ``pos`` (``key``: it,
        already read)."""
        while True:
            key = key or self.key(pos)
            if key is None:  # an empty object, or not JSON
                return None
            name, pos = key
            if name == b'"id"' or (b"\\" in name and _decoded(name) == "id"):
                return _value_id(self.body, pos)
            self.charge(_KEY_WORK + len(name))
            pos, key = self.after_value(pos), None
            if pos < 0:
                return None

    def key(self, pos: int) -> tuple[bytes, int] | None:
        """The key at ``pos`` (with its quotes) and where its value starts."""
        body = self.body
        key = _KEY.match(body, pos, min(self.end, pos + _KEY_WINDOW))
        if key is not None:
            return key.group(1), key.end()
        start = _end(_BLANKS, body, pos, self.end)
        if body[start : start + 1] != b'"':
            return None
        stop = self.string_end(start)
        colon = _COLON.match(body, stop, self.end) if stop >= 0 else None
        return (body[start:stop], colon.end()) if colon is not None else None

    def string_end(self, pos: int) -> int:
        """Where the string that opens at ``pos`` ends (after its quote); -1: not within
        reach. A quote and a backslash are looked for at memory speed, each escape a step."""
        body, end = self.body, self.end
        start = pos + 1
        while True:
            quote = body.find(b'"', start, end)
            if quote < 0:
                return -1
            escape = body.find(b"\\", start, quote)
            if escape < 0:
                return quote + 1
            self.charge(_ESCAPE_WORK)
            start = escape + 2

    def after_value(self, pos: int) -> int:
        """Where the key after the top-level value at ``pos`` starts; -1 when none follows."""
        first = self.body[pos : pos + 1]
        if first in (b"[", b"{"):
            return self.skip_nested(pos)
        if first == b'"':
            end = self.string_end(pos)
            if end < 0:
                return -1
        else:
            end = _end(_LITERAL, self.body, pos, self.end)
        return self.next_key(end)

    def next_key(self, pos: int) -> int:
        """Where the key after a top-level value ending at ``pos`` starts; -1: none follows."""
        separator = _SEPARATOR.match(self.body, pos, self.end)
        return separator.end() if separator is not None and separator.group(1) == b"," else -1

    def skip_nested(self, pos: int) -> int:
        """Skip the array or object that opens at ``pos`` (a top-level value): where the
        next top-level key starts, or -1 when the body ends (or the top-level object
        closes) first.

        Strings (brackets inside them do not count) and what lies between them go by
        the regex, up to _CHUNK bytes at a time; a stretch without strings is crossed by
        counting its brackets. In valid JSON only a comma and blanks, or the object's
        end, come between a top-level value and the next key.
        """
        body, n = self.body, self.end
        depth, pos = 1, pos + 1
        while True:
            end = _end(_BALANCED, body, pos, min(n, pos + _CHUNK))
            # A short stretch counts whole (cheaper than finding its strings).
            self.charge(end - pos if end - pos < 1024 else _string_span(body, pos, end))
            if end < n and body[end] in b"]}":
                depth -= 1
                pos = end + 1
                if depth == 0:
                    return self.next_key(pos)
                continue
            if end == pos and body[end : end + 1] == b'"':
                # A string longer than a chunk (or never closed).
                pos = self.string_end(pos)
                if pos < 0:
                    return -1
                continue
            # An opening bracket the regex could not close within the chunk, or the
            # chunk's end: count brackets up to the next string.
            quote = body.find(b'"', end, n)
            stop = n if quote < 0 else quote
            depth += _depth_change(body, end, stop)
            if depth <= 0 or quote < 0:
                # Closed in the stretch: the string ahead is the next key (depth 0), or the
                # top-level object closed too (below 0).
                return quote if depth == 0 else -1
            pos = quote


def _end(pattern: re.Pattern[bytes], body: bytes, pos: int, endpos: int | None = None) -> int:
    """Where ``pattern`` (one that also matches nothing) stops reading at ``pos``."""
    match = pattern.match(body, pos, len(body) if endpos is None else endpos)
    return match.end() if match is not None else pos


def _string_span(body: bytes, start: int, stop: int) -> int:
    """Bytes from the first quote to the last in ``body[start:stop]``: the stretch holding
    strings, what a regex crossing it costs (memchr finds both ends)."""
    first = body.find(b'"', start, stop)
    return 0 if first < 0 else body.rfind(b'"', first, stop) + 1 - first


def _decoded(name: bytes) -> str | None:
    try:
        text = orjson.loads(name)
    except orjson.JSONDecodeError:
        return None
    return text if isinstance(text, str) else None


def _value_id(body: bytes, pos: int) -> str | None:
    """The id the value at ``pos`` gives (a string or an integer), else None."""
    first = body[pos : pos + 1]
    window = pos + _ID_WINDOW  # past the body's end: the end
    if first == b'"':
        string = _STRING_RE.match(body, pos, window)
        if string is None:
            return None
        end = string.end()
    elif first in (b"", b"[", b"{"):
        return None  # no id: clean_id takes no array or object
    else:
        end = _end(_LITERAL, body, pos, window)
        if end == window < len(body):
            return None  # a literal longer than any id, cut by the window
    try:
        return clean_id(orjson.loads(body[pos:end]))
    except orjson.JSONDecodeError:
        return None


def _depth_change(body: bytes, start: int, stop: int) -> int:
    """Arrays and objects opened minus closed in ``body[start:stop]`` (no string in it)."""
    return (
        _occurrences(body, 0x5B, start, stop)  # [
        + _occurrences(body, 0x7B, start, stop)  # {
        - _occurrences(body, 0x5D, start, stop)  # ]
        - _occurrences(body, 0x7D, start, stop)  # }
    )


def _occurrences(body: bytes, char: int, start: int, stop: int) -> int:
    """``body.count(char, start, stop)``, counted between the first and the last one only:
    a tensor of numbers has no braces but the one closing its object (memchr finds those
    two ends at many times the speed of counting)."""
    first = body.find(char, start, stop)
    if first < 0:
        return 0
    return body.count(char, first, body.rfind(char, first, stop) + 1)


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
