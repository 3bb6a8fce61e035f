"""The prometheus source reads every family of a window in one query.

Prometheus evaluates one query over one snapshot, in which a scrape's samples
are all present or all absent; a query per family let a scrape stored between
two of them give a count from one scrape and its sums from the next.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vigil.core import metric_names as names
from vigil.core.metric_names import total
from vigil.core.window import FAMILY_LABELS
from vigil.metrics.prometheus import (
    PART_LABEL,
    PrometheusSource,
    combined_query,
    family_query,
    pods_query,
    split_combined,
)
from vigil.metrics.source import RevisionTarget

REVISION = {"namespace": "ml", "model_deployment": "wine", "revision": "r1"}


class OneAnswer(PrometheusSource):
    """Answers the combined query with a count and sums from one scrape, and a pod."""

    def __init__(self) -> None:
        super().__init__("http://prometheus")
        self.sent: list[str] = []

    async def query(self, promql: str, now: float) -> list[dict[str, Any]]:
        self.sent.append(promql)
        families = list(FAMILY_LABELS)
        values = {total(names.PREDICTIONS): 100.0, names.PREDICTION_VALUE_SUM: 1000.0}
        answer = [
            {"metric": {**REVISION, PART_LABEL: str(families.index(f))}, "value": [now, str(v)]}
            for f, v in values.items()
        ]
        pods = {**REVISION, PART_LABEL: str(len(families))}
        return [*answer, {"metric": pods, "value": [now, "2"]}]


def test_every_family_of_a_window_is_one_query() -> None:
    source = OneAnswer()
    target = RevisionTarget("ml", "wine", "r1", 300.0, labels_window_seconds=3600.0)
    collection = asyncio.run(source.collect([target], now=1000.0))
    assert collection.queries == 1 and len(source.sent) == 1
    window = collection.windows[target.key]
    assert (window.pods, window.predictions) == (2, 100.0)
    assert window.prediction_sum == 1000.0
    sent = source.sent[0]
    assert family_query(total(names.REQUESTS), 300.0) in sent
    assert family_query(total(names.FEEDBACK_LABELS), 3600.0) in sent
    assert pods_query() in sent


def test_a_combined_answer_splits_back_into_its_parts_without_the_mark() -> None:
    query = combined_query(["a", "b", "c"])
    # A balanced tree of or: a chain re-read what it gathered at every step (500 models:
    # 5.1 s against 2.7 s, bench/README.md).
    assert query == (
        f'((label_replace(a, "{PART_LABEL}", "0", "", "") or '
        f'label_replace(b, "{PART_LABEL}", "1", "", "")) or '
        f'label_replace(c, "{PART_LABEL}", "2", "", ""))'
    )
    answer = [
        {"metric": {"x": "1", PART_LABEL: "2"}, "value": [0, "3"]},
        {"metric": {"x": "2", PART_LABEL: "0"}, "value": [0, "1"]},
        {"metric": {"x": "3"}, "value": [0, "9"]},  # not one of ours: dropped
    ]
    assert split_combined(answer, 3) == [
        [{"metric": {"x": "2"}, "value": [0, "1"]}],
        [],
        [{"metric": {"x": "1"}, "value": [0, "3"]}],
    ]
