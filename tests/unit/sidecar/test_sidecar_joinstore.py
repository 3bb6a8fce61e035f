"""The join store: bounds, window, dedup, unknown and forgotten ids, handoff."""

from __future__ import annotations

import math
import random
from collections import deque

import pytest
from manual_clock import Clock

from vigil.sidecar.identity import id_key
from vigil.sidecar.joinstore import (
    ABSENT,
    DUPLICATE,
    EXPIRED,
    FORGOTTEN,
    INVALID,
    JOINED,
    NO_PREDICTION,
    JoinStore,
)


def store(capacity=100, window=3600.0, clock=None, max_rows=16):
    return JoinStore(capacity, window, max_rows, clock or Clock())


class TestJoin:
    def test_a_label_joins_once_then_is_a_duplicate(self):
        s = store()
        s.add(1, 1000.0, [2.0], "r1")
        first = s.label(1, None)
        assert (first.outcome, first.revision, first.prediction) == (JOINED, "r1", 2.0)
        assert s.label(1, None).outcome == DUPLICATE
        assert s.label(1, 0).outcome == DUPLICATE

    def test_an_id_never_seen_is_absent(self):
        assert store().label(42, None).outcome == ABSENT

    def test_rows_of_a_batch_prediction_join_one_by_one(self):
        s = store()
        s.add(7, 1000.0, [0.0, 1.0, 2.0], "r1")
        assert s.label(7, None).outcome == INVALID  # which row?
        assert [s.label(7, r).prediction for r in range(3)] == [0.0, 1.0, 2.0]
        assert s.label(7, 3).outcome == INVALID
        assert s.label(7, 1).outcome == DUPLICATE

    def test_rows_without_a_prediction_and_unread_answers(self):
        s = store()
        s.add(1, 1000.0, [math.nan, 1.0], "r1")
        s.add(2, 1000.0, None, "r1")
        assert s.label(1, 0).outcome == NO_PREDICTION
        assert s.label(1, 1).outcome == JOINED
        assert s.label(2, None).outcome == NO_PREDICTION

    def test_a_label_for_an_unread_answer_counts_once_and_resent_as_duplicate(self):
        # Resending labels is safe (docs/howto/feedback.md): not counted twice.
        s = store()
        s.add(2, 1000.0, None, "r1")
        assert [s.label(2, None).outcome for _ in range(3)] == [
            NO_PREDICTION,
            DUPLICATE,
            DUPLICATE,
        ]
        assert s.label(2, 0).outcome == DUPLICATE  # its one kept row
        b = store()
        assert all(b.adopt(r) for r in s.export())
        assert b.label(2, None).outcome == DUPLICATE  # the mark travels in a handoff

    def test_resent_labels_for_rows_of_an_unread_answer_are_duplicates(self):
        # Its rows past the first are not kept (raw protocol, a dropped copy, an error
        # answer), yet resending is safe (docs/howto/feedback.md): each row counts once.
        s = store()
        s.add(1, 1000.0, None, "r1")
        assert [s.label(1, r).outcome for r in range(3)] == [NO_PREDICTION] * 3
        assert [s.label(1, r).outcome for r in range(3)] == [DUPLICATE] * 3
        assert s.label(1, 64).outcome == NO_PREDICTION
        assert s.label(1, 3).outcome == NO_PREDICTION  # a row not labelled before
        b = store()
        assert all(b.adopt(r) for r in s.export())  # the marks travel in a handoff
        assert [b.label(1, r).outcome for r in (0, 1, 2, 3, 64)] == [DUPLICATE] * 5
        assert b.label(1, 4).outcome == NO_PREDICTION
        assert b.rows == 1  # still one kept row

    def test_rows_past_the_per_prediction_cap_are_not_kept(self):
        s = store(max_rows=2)
        s.add(1, 1000.0, [1.0, 2.0, 3.0], "r1")
        assert s.rows == 2 and s.truncated_rows == 1
        assert s.label(1, 2).outcome == NO_PREDICTION

    def test_a_reused_client_id_keeps_the_newer_prediction(self):
        s = store()
        s.add(1, 1000.0, [1.0], "r1")
        s.add(1, 1001.0, [5.0], "r1")
        assert s.reused == 1 and s.predictions == 1
        assert s.label(1, None).prediction == 5.0


class TestBounds:
    def test_the_oldest_prediction_goes_when_full_and_is_remembered_as_forgotten(self):
        s = store(capacity=10)
        for key in range(1, 16):
            s.add(key, 1000.0, [float(key)], "r1")
        assert s.rows == 10 and s.predictions == 10
        assert s.evicted["capacity"] == 5
        assert s.label(3, None).outcome == FORGOTTEN
        assert s.label(15, None).outcome == JOINED
        assert s.label(999, None).outcome == ABSENT

    def test_predictions_older_than_the_window_go(self):
        clock = Clock(1000.0)
        s = store(window=60.0, clock=clock)
        s.add(1, 1000.0, [1.0], "r1")
        s.add(2, 1050.0, [1.0], "r1")
        clock.now = 1070.0
        s.expire()
        assert s.evicted["window"] == 1
        assert s.label(1, None).outcome == FORGOTTEN
        assert s.label(2, None).outcome == JOINED
        assert s.oldest_age() == 20.0

    def test_memory_is_bounded_by_capacity(self):
        small, large = store(capacity=1000), store(capacity=50_000)
        assert small.nbytes < 80_000
        per_row = large.nbytes / 50_000
        assert per_row < 60, per_row
        empty = small.nbytes
        for n in range(2_400):  # around the ring more than twice
            small.add(id_key(str(n)), 1000.0, [1.0], "r1")
        assert small.rows == 1000
        assert small.nbytes == empty  # preallocated: full costs no more

    @pytest.mark.slow
    def test_many_rows_and_deletions_keep_every_live_key_findable(self):
        # The table against a model of the ring: inserts, reused ids (their older rows
        # stay in the ring until evicted), evictions, in random order.
        rng = random.Random(5)
        s = store(capacity=500, max_rows=4)
        ring: deque[list] = deque()  # [key, rows, live]
        held = 0  # rows in the ring (a running sum: the model stays linear in the steps)
        live: dict[int, list] = {}
        for step in range(20_000):
            key = rng.getrandbits(64) if rng.random() < 0.9 or not live else rng.choice(list(live))
            rows = [float(step)] * rng.randint(1, 4)
            s.add(key, 1000.0, rows, "r1")
            if key in live:
                live[key][2] = False
            entry = [key, rows, True]
            ring.append(entry)
            held += len(rows)
            live[key] = entry
            while held > 500:
                gone = ring.popleft()
                held -= len(gone[1])
                if gone[2]:
                    del live[gone[0]]
        assert s.predictions == len(live)
        assert s.rows == sum(len(e[1]) for e in ring)
        for key, (_, rows, _) in live.items():
            assert s.label(key, len(rows) - 1).prediction == rows[-1]


class TestHandoff:
    def test_export_and_adopt_keep_labels_and_revisions(self):
        a, b = store(), store()
        a.add(1, 1000.0, [1.0, 2.0], "old")
        a.add(2, 1000.0, None, "old")
        assert a.label(1, 0).outcome == JOINED
        records = list(a.export())
        assert len(records) == 2
        assert all(b.adopt(r) for r in records)
        assert b.label(1, 0).outcome == DUPLICATE  # counted before the handoff
        found = b.label(1, 1)
        assert (found.outcome, found.revision, found.prediction) == (JOINED, "old", 2.0)
        assert b.label(2, None).outcome == NO_PREDICTION
        assert not b.adopt(records[0])  # already held
        assert b.conflicts == 1

    def test_an_adopted_prediction_past_the_window_is_expired(self):
        clock = Clock(1000.0)
        s = store(window=60.0, clock=clock)
        s.add(9, 1000.0, [1.0], "r1")
        s.add(8, 1100.0, [1.0], "r1")  # the window evicts 9 from the front
        clock.now = 1100.0
        old = next(iter(store(window=1e9).export()), None)
        assert old is None
        late = JoinStore(10, 60.0, 4, clock)
        late.add(5, 1090.0, [1.0], "r1")
        clock.now = 1200.0
        assert late.label(5, None).outcome == EXPIRED


class TestCheckedLabels:
    def test_a_label_its_check_refuses_is_invalid_and_leaves_the_row_unlabelled(self):
        s = store()
        s.add(1, 1000.0, [2.0, math.nan], "r1")
        seen = []

        def refuse(revision: str, prediction: float) -> str:
            seen.append((revision, prediction))
            return "too far"

        refused = s.label(1, 0, check=refuse)
        assert (refused.outcome, refused.detail) == (INVALID, "too far")
        assert seen == [("r1", 2.0)]
        assert s.label(1, 0, check=lambda _r, _p: "").outcome == JOINED
        # No prediction to check a truth against: not asked.
        assert s.label(1, 1, check=refuse).outcome == NO_PREDICTION and len(seen) == 1
