"""The join store: this pod's recent predictions by request id, bounded and compact.

Labels arrive hours or days after their prediction, so the store must hold
many predictions in little memory. A Python dict of records costs about
250 bytes per prediction; here a prediction row costs 30 bytes in a ring of
preallocated arrays plus 16 in an open-addressing table (linear probing,
backward-shift deletion) from the id's 64-bit key to the ring position of
its first row. The ring is the eviction order: when it is full the oldest
prediction goes (counted), and predictions older than the join window go
too. Keys of forgotten predictions go into a Bloom filter, so that a late
label can be told "expired" rather than "unknown" (false positives about
0.1 %: a few unknown ids read as expired; docs/design/ground-truth.md).

Keys are 64-bit hashes of the ids: two different ids collide with
probability about n^2 / 2^65 (3e-9 at 250 000 predictions).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ABSENT",
    "DUPLICATE",
    "EXPIRED",
    "FORGOTTEN",
    "INVALID",
    "JOINED",
    "NO_PREDICTION",
    "JoinStore",
    "Labelled",
    "StoredRecord",
]

# What labelling one row found (the feedback outcomes; "absent" is resolved further
# by the caller: another pod may hold it).
JOINED = "joined"
DUPLICATE = "duplicate"
NO_PREDICTION = "no_prediction"
EXPIRED = "expired"
INVALID = "invalid"
ABSENT = "absent"
#: Not held, but its key is among those let go: probably expired (the filter may err).
FORGOTTEN = "forgotten"

# Row flags.
_LABELLED = 1
_HAS_PREDICTION = 2
#: The answer was not read (monitoring dropped it, raw protocol): one row, no prediction.
_ROWS_UNKNOWN = 4
#: More rows than max_rows_per_prediction: the rest were not stored.
_TRUNCATED = 8
#: Rows 1..64 of an unread answer are marked when labelled, as bits in its one kept row's
#: prediction slot (unused there): resent, their labels are duplicates like any other.
_UNREAD_MARKED_ROWS = 64

#: Revisions one store tells apart (a uint8 per row).
MAX_REVISIONS = 256
#: Bloom filter: 10 hashes and 14.4 bits per key give about 0.1 % false positives.
_BLOOM_HASHES = 10
_BLOOM_BITS_PER_KEY = 14.4


@dataclass(frozen=True, slots=True)
class Labelled:
    """The outcome of labelling one row, with what the caller needs to count it."""

    outcome: str
    revision: str = ""
    served_at: float = 0.0
    prediction: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One prediction as handed to another pod (shutdown handoff)."""

    key: int
    served_at: float
    revision: str
    flags: int
    #: Per row: the prediction (None: none) and whether a label was counted.
    rows: tuple[tuple[float | None, bool], ...]


class _Forgotten:
    """Keys of predictions the store let go, in two generations of a Bloom filter.

    A key is remembered for at least ``capacity`` and at most ``2 x capacity``
    further evictions.
    """

    def __init__(self, capacity: int) -> None:
        self.bits = max(1024, int(capacity * _BLOOM_BITS_PER_KEY))
        self.capacity = capacity
        self.generations = [bytearray((self.bits + 7) // 8), bytearray((self.bits + 7) // 8)]
        self.count = 0

    def _positions(self, key: int) -> list[int]:
        low, high = key & 0xFFFFFFFF, (key >> 32) | 1
        bits = self.bits
        return [(low + i * high) % bits for i in range(_BLOOM_HASHES)]

    def add(self, key: int) -> None:
        if self.count >= self.capacity:
            self.generations = [bytearray((self.bits + 7) // 8), self.generations[0]]
            self.count = 0
        current = self.generations[0]
        for bit in self._positions(key):
            current[bit >> 3] |= 1 << (bit & 7)
        self.count += 1

    def __contains__(self, key: int) -> bool:
        positions = self._positions(key)
        return any(
            all(gen[bit >> 3] & (1 << (bit & 7)) for bit in positions) for gen in self.generations
        )

    @property
    def nbytes(self) -> int:
        return sum(len(g) for g in self.generations)


class JoinStore:
    """Predictions by id key, bounded in rows and in age.

    ``capacity`` rows at most (a prediction of n rows takes n); rows older
    than ``window_seconds`` are dropped. Single-threaded (the event loop).
    """

    def __init__(
        self,
        capacity: int,
        window_seconds: float,
        max_rows_per_prediction: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.window_seconds = window_seconds
        self.max_rows = max(1, min(max_rows_per_prediction, capacity))
        self.clock = clock
        # np.zeros: pages are mapped as they are first written (resident memory grows
        # with use up to the bound); memoryviews index them as Python numbers, fast.
        self._arrays = {
            "key": np.zeros(capacity, np.uint64),
            "time": np.zeros(capacity, np.float64),
            "pred": np.zeros(capacity, np.float64),
            "row": np.zeros(capacity, np.uint32),
            "flags": np.zeros(capacity, np.uint8),
            "rev": np.zeros(capacity, np.uint8),
        }
        self._key = memoryview(self._arrays["key"])
        self._time = memoryview(self._arrays["time"])
        self._pred = memoryview(self._arrays["pred"])
        #: The same slots as bits: an unread answer's marks of its labelled rows past the first.
        self._marks = memoryview(self._arrays["pred"].view(np.uint64))
        self._row = memoryview(self._arrays["row"])
        self._flags = memoryview(self._arrays["flags"])
        self._rev = memoryview(self._arrays["rev"])
        size = 1 << max(4, (2 * capacity - 1).bit_length())
        self._mask = size - 1
        self._slots_array = np.zeros(size, np.int64)
        self._slots = memoryview(self._slots_array)
        #: Absolute positions: rows [tail, head) are in the ring.
        self.head = 0
        self.tail = 0
        self.revisions: list[str] = []
        self._revision_index: dict[str, int] = {}
        self._forgotten = _Forgotten(capacity)
        self.predictions = 0  # live predictions (records) in the store
        self.evicted = {"window": 0, "capacity": 0}
        self.reused = 0  # a client id seen again: the newer prediction replaced the older
        self.truncated_rows = 0
        self.adopted = 0
        self.conflicts = 0  # handed-over predictions whose id this pod already held

    # ------------------------------------------------------------ sizes

    @property
    def rows(self) -> int:
        return self.head - self.tail

    @property
    def nbytes(self) -> int:
        """The store's memory bound (arrays, table and filter)."""
        arrays = sum(a.nbytes for a in self._arrays.values())
        return arrays + self._slots_array.nbytes + self._forgotten.nbytes

    def oldest_age(self, now: float | None = None) -> float:
        """Age of the oldest stored row: the window this pod can join over right now."""
        if self.head == self.tail:
            return 0.0
        now = self.clock() if now is None else now
        return max(0.0, now - self._time[self.tail % self.capacity])

    # ------------------------------------------------------------ the table

    def _find(self, key: int) -> int:
        mask, slots, keys, cap = self._mask, self._slots, self._key, self.capacity
        h = key & mask
        while True:
            s = slots[h]
            if s == 0:
                return -1
            if keys[(s - 1) % cap] == key:
                return s - 1
            h = (h + 1) & mask

    def _link(self, key: int, position: int) -> None:
        mask, slots = self._mask, self._slots
        h = key & mask
        while slots[h] != 0:
            h = (h + 1) & mask
        slots[h] = position + 1

    def _unlink(self, key: int, position: int) -> bool:
        """Remove ``key -> position`` from the table (backward-shift deletion)."""
        mask, slots, keys, cap = self._mask, self._slots, self._key, self.capacity
        i = key & mask
        while True:
            s = slots[i]
            if s == 0:
                return False
            if s == position + 1:
                break
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            s = slots[j]
            if s == 0:
                break
            home = keys[(s - 1) % cap] & mask
            # The entry at j may move to i unless its home lies cyclically in (i, j].
            if (i < home <= j) if i <= j else (home > i or home <= j):
                continue
            slots[i] = s
            i = j
        slots[i] = 0
        return True

    # ------------------------------------------------------------ the ring

    def _span(self, position: int) -> int:
        """Rows of the prediction whose first row is at ``position``."""
        cap, rows, head = self.capacity, self._row, self.head
        end = position + 1
        while end < head and rows[end % cap] != 0:
            end += 1
        return end - position

    def _evict_oldest(self, reason: str) -> None:
        position = self.tail
        key = self._key[position % self.capacity]
        if self._unlink(key, position):
            self.predictions -= 1
            self._forgotten.add(key)
        self.tail = position + self._span(position)
        self.evicted[reason] += 1

    def expire(self, now: float | None = None) -> None:
        """Let go of predictions older than the window."""
        cutoff = (self.clock() if now is None else now) - self.window_seconds
        times, cap = self._time, self.capacity
        while self.tail < self.head and times[self.tail % cap] < cutoff:
            self._evict_oldest("window")

    def _revision(self, revision: str) -> int:
        index = self._revision_index.get(revision)
        if index is None:
            if len(self.revisions) >= MAX_REVISIONS:
                raise OverflowError(f"more than {MAX_REVISIONS} revisions in one join store")
            index = self._revision_index[revision] = len(self.revisions)
            self.revisions.append(revision)
        return index

    def _write(
        self, key: int, served_at: float, revision: str, rows: Sequence[tuple[float, int]]
    ) -> int:
        """Append one prediction (rows of (prediction, flags)), making room first; returns
        the ring index of its first row."""
        n = len(rows)
        while self.head + n - self.tail > self.capacity:
            self._evict_oldest("capacity")
        rev = self._revision(revision)
        cap = self.capacity
        position = self.head
        for offset, (prediction, flags) in enumerate(rows):
            i = (position + offset) % cap
            self._key[i] = key
            self._time[i] = served_at
            self._pred[i] = prediction
            self._row[i] = offset
            self._flags[i] = flags
            self._rev[i] = rev
        self.head = position + n
        self._link(key, position)
        self.predictions += 1
        return position % cap

    def add(
        self,
        key: int,
        served_at: float,
        predictions: Sequence[float] | None,
        revision: str,
    ) -> None:
        """Record one prediction: its rows' values (NaN: that row has none).

        ``predictions`` None: the answer was not read; a label for it counts as
        ``no_prediction``, the same one resent as ``duplicate``.
        """
        self.expire(served_at)
        old = self._find(key)
        if old >= 0:  # a client reused its id: the newer prediction wins
            self._unlink(key, old)
            self.predictions -= 1
            self.reused += 1
        if predictions is None:
            # 0.0: no bit set, no row past the first marked yet.
            rows: list[tuple[float, int]] = [(0.0, _ROWS_UNKNOWN)]
        else:
            values = list(predictions[: self.max_rows]) or [math.nan]
            extra = _TRUNCATED if len(predictions) > self.max_rows else 0
            self.truncated_rows += max(0, len(predictions) - self.max_rows)
            rows = [(v, (_HAS_PREDICTION if v == v else 0) | extra) for v in values]
        self._write(key, served_at, revision, rows)

    # ------------------------------------------------------------ labels

    def label(
        self,
        key: int,
        row: int | None,
        now: float | None = None,
        check: Callable[[str, float], str] | None = None,
    ) -> Labelled:
        """Count a label for one row (``row`` None: the prediction's only row).

        Returns ``absent`` when this pod does not hold the id (another may),
        ``forgotten`` when it held it once, ``expired`` when it holds it past
        the window. ``check`` (revision, prediction) says why the label cannot be
        scored against the row's prediction ("" when it can): then ``invalid``, and
        the row stays unlabelled for a corrected label.
        """
        now = self.clock() if now is None else now
        position = self._find(key)
        if position < 0:
            return Labelled(FORGOTTEN if key in self._forgotten else ABSENT)
        cap = self.capacity
        first = position % cap
        served_at = self._time[first]
        revision = self.revisions[self._rev[first]]
        if served_at < now - self.window_seconds:
            return Labelled(EXPIRED, revision, served_at)
        flags = self._flags[first]
        if flags & _ROWS_UNKNOWN and row:
            return Labelled(self._mark_unread_row(first, row), revision, served_at)
        span = self._span(position)  # 1 for an unread answer: its one row, marked below
        if row is None:
            if span > 1:
                return Labelled(
                    INVALID,
                    revision,
                    served_at,
                    detail=f"the prediction has {span} rows: give 'row' or a list of truths",
                )
            row = 0
        if row >= span:
            if flags & _TRUNCATED:
                return Labelled(NO_PREDICTION, revision, served_at)
            return Labelled(
                INVALID, revision, served_at, detail=f"row {row} of a {span}-row prediction"
            )
        i = (position + row) % cap
        row_flags = self._flags[i]
        if row_flags & _LABELLED:
            return Labelled(DUPLICATE, revision, served_at)
        if row_flags & _HAS_PREDICTION and check is not None:
            problem = check(revision, self._pred[i])
            if problem:
                return Labelled(INVALID, revision, served_at, detail=problem)
        self._flags[i] = row_flags | _LABELLED
        if not row_flags & _HAS_PREDICTION:
            return Labelled(NO_PREDICTION, revision, served_at)
        return Labelled(JOINED, revision, served_at, self._pred[i])

    def _mark_unread_row(self, first: int, row: int) -> str:
        """Label row ``row`` (>= 1) of the unread answer kept at ring index ``first``."""
        if row > _UNREAD_MARKED_ROWS:
            # No bit for it: counted each time it is sent, as rows past the per-prediction cap.
            return NO_PREDICTION
        bit = 1 << (row - 1)
        marks = self._marks[first]
        if marks & bit:
            return DUPLICATE
        self._marks[first] = marks | bit
        return NO_PREDICTION

    def holds(self, key: int) -> bool:
        return self._find(key) >= 0

    # ------------------------------------------------------------ handoff

    def export(self) -> Iterator[StoredRecord]:
        """Every live prediction within the window, oldest first (for a shutdown handoff)."""
        cap = self.capacity
        cutoff = self.clock() - self.window_seconds
        position = self.tail
        while position < self.head:
            span = self._span(position)
            first = position % cap
            key = self._key[first]
            if self._find(key) == position and self._time[first] >= cutoff:
                rows: list[tuple[float | None, bool]] = []
                for offset in range(span):
                    i = (position + offset) % cap
                    flags = self._flags[i]
                    value = self._pred[i] if flags & _HAS_PREDICTION else None
                    rows.append((value, bool(flags & _LABELLED)))
                if self._flags[first] & _ROWS_UNKNOWN:
                    # Its marked rows past the first, as rows without a prediction: an older
                    # sidecar adopts them as such (and counts their labels as it did before).
                    marks = self._marks[first]
                    rows += [(None, bool(marks >> r & 1)) for r in range(marks.bit_length())]
                yield StoredRecord(
                    key,
                    self._time[first],
                    self.revisions[self._rev[first]],
                    self._flags[first] & (_ROWS_UNKNOWN | _TRUNCATED),
                    tuple(rows),
                )
            position += span

    def has_room_for_revisions(self, revisions: set[str]) -> bool:
        """Whether predictions of ``revisions`` fit (checked before a handoff adopts any)."""
        return len(self._revision_index.keys() | revisions) <= MAX_REVISIONS

    def adopt(self, record: StoredRecord) -> bool:
        """Take over a prediction from a pod that is going away."""
        if self._find(record.key) >= 0:
            self.conflicts += 1
            return False
        if record.served_at < self.clock() - self.window_seconds or not record.rows:
            return False
        shared = record.flags & (_ROWS_UNKNOWN | _TRUNCATED)
        if shared & _ROWS_UNKNOWN:
            # One kept row; the labelled rows past it become its marks (see export).
            _, labelled = record.rows[0]
            unread = (0.0, _ROWS_UNKNOWN | (_LABELLED if labelled else 0))
            first = self._write(record.key, record.served_at, record.revision, [unread])
            self._marks[first] = sum(
                1 << r
                for r, (_, marked) in enumerate(record.rows[1 : _UNREAD_MARKED_ROWS + 1])
                if marked
            )
            self.adopted += 1
            return True
        rows = [
            (
                math.nan if value is None else value,
                shared
                | (_HAS_PREDICTION if value is not None else 0)
                | (_LABELLED if labelled else 0),
            )
            for value, labelled in record.rows[: self.max_rows]
        ]
        self._write(record.key, record.served_at, record.revision, rows)
        self.adopted += 1
        return True
