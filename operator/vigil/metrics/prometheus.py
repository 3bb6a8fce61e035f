"""The ``prometheus`` source: PromQL over the Prometheus HTTP API.

One instant query per distinct window length covers every metric family and
every ModelDeployment at once (``sum by (namespace, model_deployment,
revision, ...) (increase(family[window]))`` per family, joined with ``or``),
so the number of queries per cycle does not grow with the number of
ModelDeployments. One query, because Prometheus evaluates a query over one
snapshot in which a scrape's samples are all present or all absent: with a
query per family, a scrape stored between two of them gave a count from one
scrape and its sums from the next (a false prediction shift, accuracy over 1). The labels
``namespace`` and ``model_deployment`` come from the scrape job
(manifests/monitoring/prometheus-scrape-config.yaml or manifests/base/podmonitor.yaml).

The prediction count, sum and sum of squares are read with ``delta``
(:data:`DELTA_FAMILIES`): the sum falls with negative predictions, which
``increase`` would read as resets; and mean and std are ratios of the three,
which cancel the extrapolation only when all three are extrapolated alike
(``increase`` treats a counter that starts inside the window, as every
candidate pod's does, unlike ``delta``). Caveat: ``delta`` does not see a
sidecar's restart, so a window in which one restarted has a wrong prediction
mean and std in this mode (the direct source tells restarts by the sidecar's
start time).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from vigil.core import metric_names as names
from vigil.core.metric_names import total
from vigil.core.window import (
    FAMILY_FILTERS,
    FAMILY_LABELS,
    SERVED_REVISION_FAMILIES,
    RevisionWindow,
    SeriesKey,
)
from vigil.metrics.session import LazySession
from vigil.metrics.source import Collection, RevisionKey, RevisionTarget

GROUP_LABELS = ("namespace", "model_deployment", "revision")
#: Tells the parts of a :func:`combined_query` apart (no family carries it).
PART_LABEL = "vigil_query_part"

#: Read with ``delta``, not ``increase``: one function for the three, so the mean and the
#: std (their ratios) cancel its extrapolation for a pod that started inside the window.
DELTA_FAMILIES = frozenset(
    {total(names.PREDICTIONS), names.PREDICTION_VALUE_SUM, names.PREDICTION_VALUE_SQUARES_SUM}
)


class PrometheusError(RuntimeError):
    """Prometheus could not answer; the message says what happened."""


def _duration(seconds: float) -> str:
    return f"{math.ceil(seconds)}s"


def _selector(matchers: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in matchers.items())


def family_query(family: str, window_seconds: float, where: Mapping[str, str] | None = None) -> str:
    """``sum by (namespace, model_deployment, revision, <kept>) (increase(...[w]))``, or
    ``delta`` for the prediction moments (:data:`DELTA_FAMILIES`).

    ``where`` adds label matchers (one ModelDeployment's series, for the report).
    """
    by = ", ".join((*GROUP_LABELS, *FAMILY_LABELS[family]))
    selector = _selector({**FAMILY_FILTERS.get(family, {}), **(where or {})})
    change = "delta" if family in DELTA_FAMILIES else "increase"
    return f"sum by ({by}) ({change}({family}{{{selector}}}[{_duration(window_seconds)}]))"


def combined_query(queries: Sequence[str]) -> str:
    """The queries as one, each answer marked with its index in :data:`PART_LABEL`; the
    ``or`` nested as a balanced tree (a chain re-reads what it gathered at every step)."""
    parts = [f'label_replace({q}, "{PART_LABEL}", "{i}", "", "")' for i, q in enumerate(queries)]
    while len(parts) > 1:
        pairs = [f"({a} or {b})" for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = pairs + parts[len(pairs) * 2 :]
    return parts[0] if parts else ""


def split_combined(answer: Sequence[Mapping[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    """A :func:`combined_query`'s answer as the ``count`` answers of its parts."""
    parts: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for item in answer:
        metric = dict(item["metric"])
        index = metric.pop(PART_LABEL, "")
        if index.isdigit() and int(index) < count:
            parts[int(index)].append({**item, "metric": metric})
    return parts


def pods_query(where: Mapping[str, str] | None = None) -> str:
    """How many sidecars of each revision Prometheus scraped successfully just now."""
    return f"count by ({', '.join(GROUP_LABELS)}) (vigil_model_info{{{_selector(where or {})}}})"


class PrometheusSource:
    """One PromQL query of every family per window length; constant queries per cycle."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._http = LazySession(session, lambda: aiohttp.ClientSession(timeout=self.timeout))

    async def close(self) -> None:
        await self._http.close()

    async def query(self, promql: str, now: float) -> list[dict[str, Any]]:
        """An instant query: a vector of ``{metric, value: [t, "v"]}``."""
        return await self._api("query", {"query": promql, "time": f"{now:.3f}"})

    async def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """A range query: a matrix of ``{metric, values: [[t, "v"], ...]}``."""
        form = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return await self._api("query_range", form)

    async def _api(self, endpoint: str, form: Mapping[str, str]) -> list[dict[str, Any]]:
        session = self._http.get()
        try:
            async with session.post(f"{self.url}/api/v1/{endpoint}", data=form) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            raise PrometheusError(
                f"prometheus {self.url}: {type(error).__name__} {error}".strip()
            ) from error
        if not isinstance(body, Mapping) or body.get("status") != "success":
            detail = body.get("error") if isinstance(body, Mapping) else body
            raise PrometheusError(f"prometheus {self.url}: query failed: {detail}")
        return list(body["data"]["result"])

    def forget(self, namespace: str, name: str) -> None:
        """Nothing kept here: Prometheus holds the history."""

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        result = Collection()
        by_window: dict[tuple[float, float], list[RevisionTarget]] = defaultdict(list)
        for target in targets:
            by_window[(target.window_seconds, target.labels_window)].append(target)
        for (window_seconds, labels_window), group in sorted(by_window.items()):
            # Labels over their own window of arrival, the rest over the health window.
            queries = [
                family_query(f, labels_window if f in SERVED_REVISION_FAMILIES else window_seconds)
                for f in FAMILY_LABELS
            ] + [pods_query()]
            result.queries += 1
            try:
                answer = await self.query(combined_query(queries), now)
                answers = split_combined(answer, len(queries))
            except PrometheusError as error:
                for target in group:
                    result.errors[target.key] = str(error)
                continue
            series, pods = _group(list(FAMILY_LABELS), answers[:-1], answers[-1])
            for target in group:
                if target.key not in pods:
                    result.errors[target.key] = (
                        f"prometheus {self.url} has no sidecar series for revision "
                        f"{target.revision} (is the scrape job installed?)"
                    )
                    continue
                result.windows[target.key] = RevisionWindow.from_series(
                    series.get(target.key, {}), pods=pods[target.key]
                )
        return result


def group_matrices(
    families: Sequence[str],
    matrices: Sequence[Sequence[Mapping[str, Any]]],
    pod_counts: Sequence[Mapping[str, Any]],
) -> dict[float, tuple[dict[RevisionKey, dict[SeriesKey, float]], dict[RevisionKey, int]]]:
    """Range answers, per evaluation time, as :meth:`PrometheusSource.collect` groups one."""

    def by_time(matrix: Sequence[Mapping[str, Any]]) -> dict[float, list[dict[str, Any]]]:
        vectors: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for item in matrix:
            for at, value in item["values"]:
                vectors[float(at)].append({"metric": item["metric"], "value": [at, value]})
        return vectors

    per_family = [by_time(matrix) for matrix in matrices]
    pods = by_time(pod_counts)
    times = sorted(set(pods).union(*per_family))
    return {
        at: _group(families, [vectors.get(at, []) for vectors in per_family], pods.get(at, []))
        for at in times
    }


def _group(
    families: Sequence[str],
    answers: Sequence[Sequence[Mapping[str, Any]]],
    pod_counts: Sequence[Mapping[str, Any]],
) -> tuple[dict[RevisionKey, dict[SeriesKey, float]], dict[RevisionKey, int]]:
    series: dict[RevisionKey, dict[SeriesKey, float]] = defaultdict(dict)
    for family, answer in zip(families, answers, strict=True):
        kept = FAMILY_LABELS[family]
        for item in answer:
            metric = item["metric"]
            value = float(item["value"][1])
            if not math.isfinite(value):
                continue
            key: RevisionKey = tuple(metric.get(label, "") for label in GROUP_LABELS)  # type: ignore[assignment]
            series_key = (family, tuple((label, metric.get(label, "")) for label in kept))
            series[key][series_key] = series[key].get(series_key, 0.0) + value
    pods = {
        tuple(item["metric"].get(label, "") for label in GROUP_LABELS): int(float(item["value"][1]))
        for item in pod_counts
    }
    return dict(series), pods  # type: ignore[return-value]
