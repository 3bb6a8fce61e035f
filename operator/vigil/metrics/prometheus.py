"""The ``prometheus`` source: PromQL over the Prometheus HTTP API.

One instant query per metric family and per distinct window length covers
every ModelDeployment at once (``sum by (namespace, model_deployment,
revision, ...) (increase(family[window]))``), so the number of queries per
cycle does not grow with the number of ModelDeployments. The labels
``namespace`` and ``model_deployment`` come from the scrape job
(manifests/monitoring/prometheus-scrape-config.yaml or manifests/base/podmonitor.yaml).

Caveat: the prediction sums are gauges that can go down for negative
predictions; ``increase`` reads a decrease as a reset, so prediction
mean/std are exact only for non-negative predictions in this mode (the
direct source tells resets by the sidecar's start time instead).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from vigil.core.window import FAMILY_FILTERS, FAMILY_LABELS, RevisionWindow, SeriesKey
from vigil.metrics.source import Collection, RevisionKey, RevisionTarget

GROUP_LABELS = ("namespace", "model_deployment", "revision")


class PrometheusError(RuntimeError):
    """Prometheus could not answer; the message says what happened."""


def _duration(seconds: float) -> str:
    return f"{math.ceil(seconds)}s"


def family_query(family: str, window_seconds: float) -> str:
    """``sum by (namespace, model_deployment, revision, <kept>) (increase(...[w]))``."""
    by = ", ".join((*GROUP_LABELS, *FAMILY_LABELS[family]))
    selector = ",".join(f'{k}="{v}"' for k, v in FAMILY_FILTERS.get(family, {}).items())
    return f"sum by ({by}) (increase({family}{{{selector}}}[{_duration(window_seconds)}]))"


def pods_query() -> str:
    """How many sidecars of each revision Prometheus scraped successfully just now."""
    return f"count by ({', '.join(GROUP_LABELS)}) (vigil_model_info)"


class PrometheusSource:
    """Batched PromQL per family; constant queries per cycle."""

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
        self._session = session
        self._owns_session = session is None

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def query(self, promql: str, now: float) -> list[dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(
                f"{self.url}/api/v1/query", data={"query": promql, "time": f"{now:.3f}"}
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            raise PrometheusError(
                f"prometheus {self.url}: {type(error).__name__} {error}".strip()
            ) from error
        if not isinstance(body, Mapping) or body.get("status") != "success":
            detail = body.get("error") if isinstance(body, Mapping) else body
            raise PrometheusError(f"prometheus {self.url}: query failed: {detail}")
        return list(body["data"]["result"])

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        result = Collection()
        by_window: dict[float, list[RevisionTarget]] = defaultdict(list)
        for target in targets:
            by_window[target.window_seconds].append(target)
        for window_seconds, group in sorted(by_window.items()):
            queries = [family_query(f, window_seconds) for f in FAMILY_LABELS] + [pods_query()]
            result.queries += len(queries)
            try:
                answers = await asyncio.gather(*(self.query(q, now) for q in queries))
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
