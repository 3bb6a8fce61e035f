"""What the sidecars counted over the report's range: Prometheus, or the sidecars directly.

- Prometheus: one range query per metric family the health loop reads
  (:data:`~vigil.core.window.FAMILY_LABELS`), each an ``increase`` over a
  sliding window evaluated every step, as the health loop's instant queries
  are; and one instant query per family over the whole range for the
  distributions. About 46 queries, whatever the range.
- Direct: each Running pod's sidecar ``/metrics`` through the API server's
  pod proxy (the person's own rights: ``pods/proxy``): counters since each
  sidecar started, one point per revision; time series need Prometheus.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from vigil.core.window import (
    FAMILY_LABELS,
    SERVED_REVISION_FAMILIES,
    RevisionWindow,
    SeriesKey,
    add_series,
    served_by,
)
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.prometheus import (
    PrometheusSource,
    family_query,
    group_matrices,
    pods_query,
)
from vigil.plugin.report.figures import Measured

Progress = Callable[[str], None]
#: Queries in flight at once: enough to hide latency, few enough for a small Prometheus.
CONCURRENCY = 4
#: Points per chart when --step is not given.
TARGET_POINTS = 120


def choose_step(span_seconds: float) -> float:
    """A step that gives about :data:`TARGET_POINTS` points, in whole 5 s."""
    return float(max(5, math.ceil(span_seconds / TARGET_POINTS / 5) * 5))


async def from_prometheus(
    url: str,
    namespace: str,
    name: str,
    *,
    start: float,
    end: float,
    step: float,
    window_seconds: float,
    labels_window_seconds: float,
    progress: Progress,
) -> Measured:
    """Sliding windows every step, and totals over the range, from Prometheus. Ground-truth
    families slide over ``labels_window_seconds``, as the health loop reads them."""
    where = {"namespace": namespace, "model_deployment": name}
    families = list(FAMILY_LABELS)
    source = PrometheusSource(url, timeout_seconds=120.0)
    gate = asyncio.Semaphore(CONCURRENCY)
    done = 0
    total = 2 * len(families) + 2

    async def run(query: Callable[[], Any], what: str) -> list[dict[str, Any]]:
        nonlocal done
        async with gate:
            answer = await query()
        done += 1
        progress(f"prometheus {done}/{total}: {what}")
        return list(answer)

    def ranged(promql: str) -> Callable[[], Any]:
        return lambda: source.query_range(promql, start, end, step)

    def instant(promql: str) -> Callable[[], Any]:
        return lambda: source.query(promql, end)

    def windows(family: str) -> float:
        return labels_window_seconds if family in SERVED_REVISION_FAMILIES else window_seconds

    span = max(end - start, step)
    try:
        answers = await _all(
            *(run(ranged(family_query(f, windows(f), where)), f) for f in families),
            run(ranged(pods_query(where)), "pods"),
            *(run(instant(family_query(f, span, where)), f"{f} (range)") for f in families),
            run(instant(pods_query(where)), "pods (now)"),
        )
    finally:
        await source.close()
    count = len(families)
    over_time = group_matrices(families, answers[:count], answers[count])
    points = {
        at: {
            key[2]: RevisionWindow.from_series(series, pods=pods.get(key, 0))
            for key, series in by_key.items()
        }
        for at, (by_key, pods) in over_time.items()
    }
    at_end = group_matrices(
        families,
        [_as_matrix(answer) for answer in answers[count + 1 : 2 * count + 1]],
        _as_matrix(answers[-1]),
    )
    totals_series = next(iter(at_end.values()), ({}, {}))[0]
    totals = {
        key[2]: RevisionWindow.from_series(series, pods=0) for key, series in totals_series.items()
    }
    return Measured(
        points=points,
        totals=totals,
        start=start,
        end=end,
        step=step,
        window_seconds=window_seconds,
        labels_window_seconds=labels_window_seconds,
        source=f"prometheus {url}",
    )


async def _all(*queries: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Every answer, in order; on the first error the other queries are cancelled and have
    ended before it is raised: one left running would open a new session after close()."""
    tasks = [asyncio.ensure_future(query) for query in queries]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _as_matrix(vector: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """An instant answer in a range answer's shape (one value each)."""
    return [{"metric": item["metric"], "values": [item["value"]]} for item in vector]


def from_scrapes(
    scrapes: Mapping[str, Sequence[tuple[str, str]]],
    *,
    now: float,
    progress: Progress,
) -> Measured:
    """The direct source: revision -> (pod name, its sidecar's /metrics text).

    Each sidecar's counters began when it started: the figures cover each
    pod's life so far (the earliest start is the range's start; a revision's
    rates are over its own first pod's life).
    """
    everyone: list[dict[SeriesKey, float]] = []
    own: dict[str, list[dict[SeriesKey, float]]] = {}
    starts: dict[str, float] = {}  # revision -> its first pod's start
    unreadable: list[str] = []
    for revision, pods in scrapes.items():
        for pod, text in pods:
            try:
                values, started_at = parse_sidecar_metrics(text)
            except (ValueError, IndexError) as error:  # not a sidecar's metrics text
                progress(f"direct: cannot read {pod}: {error}")
                unreadable.append(pod)
                continue
            progress(f"direct: read {pod} ({len(values)} series)")
            everyone.append(values)
            own.setdefault(revision, []).append(
                {k: v for k, v in values.items() if k[0] not in SERVED_REVISION_FAMILIES}
            )
            if started_at is not None:
                starts[revision] = min(started_at, starts.get(revision, started_at))
    labelled = add_series(everyone)
    windows = {
        revision: RevisionWindow.from_series(
            {**add_series(parts), **served_by(labelled, revision)}, pods=len(parts)
        )
        for revision, parts in own.items()
    }
    start = min(starts.values(), default=now)
    return Measured(
        points={now: windows},
        totals=windows,
        start=start,
        end=now,
        step=0.0,
        window_seconds=max(1.0, now - start),
        revision_seconds={rev: max(1.0, now - began) for rev, began in starts.items()},
        source="direct (each sidecar's counters since it started)",
        notes=(
            "direct source: one point per revision (counters since each sidecar started); "
            "figures over time need Prometheus (--prometheus URL)",
            *(
                [f"pods not read (not a sidecar's metrics): {', '.join(unreadable)}"]
                if unreadable
                else []
            ),
        ),
    )


def now() -> float:
    return time.time()
