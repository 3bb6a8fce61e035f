"""Benchmark: what the direct source keeps of an hour of one pod's scrapes, and its CPU.

One pod, scraped every 30 s for 70 minutes, with the operator's defaults:
health window 5 min, labels (ground-truth) window 1 h. The pod's exposition
has the sidecar's names and labels (requests and latency from the sidecar's
own ``OpsMetrics``, ground truth from its ``FeedbackMetrics``, feature bins
as the monitor writes them: 12 per feature) for 13 and 40 features; the
counters grow between scrapes, so every diff is real. Every scrape goes
through the real parser (``parse_sidecar_metrics``); only the HTTP GET is
left out.

Measured, for the working tree's ``DirectSource`` and a named baseline in
the same run (the ``direct.py`` of ``--baseline``, read with ``git show``:
nothing in the work tree or the repository changes):

- **retained memory** after the 70 minutes (tracemalloc: what the source
  still holds once the last collection's figures are dropped), and the
  samples (series values) it keeps;
- **CPU per cycle** (``time.process_time``) over the last 20 cycles, when
  the hour is full: the whole ``collect`` (parse included, the same for
  both), and the window pass alone (``_window``: the per-pod diffs).

Usage: .venv/bin/python bench/health/retention.py [--baseline b11b8d2] [--features 13,40]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from vigil.core.window import Scrape
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics import direct as current_direct
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.sidecar.feedback import FeedbackMetrics, class_code
from vigil.sidecar.joinstore import Labelled
from vigil.sidecar.metrics import BASE_LABELS, OpsMetrics

ROOT = Path(__file__).resolve().parents[2]
#: The last commit with the old rule (every series kept for the labels window).
DEFAULT_BASELINE = "b11b8d2"
INTERVAL = 30.0
HEALTH_WINDOW = 300.0
LABELS_WINDOW = 3600.0
CYCLES = 140  # 70 minutes: the hour plus the margin, then 20 cycles measured
MEASURED = 20
BINS = 12
BASE = {"model": "wine", "version": "1", "revision": "r1", "role": "stable"}


def template(features: int) -> list[tuple[str, float | None]]:
    """A sidecar's exposition, as (line, value to grow) pairs; None: print as is."""
    registry = CollectorRegistry(auto_describe=False)
    ops = OpsMetrics(registry, dict(BASE))
    for i, seconds in enumerate((0.004, 0.02, 0.04, 0.09, 0.3, 1.2)):
        ops.observe("infer", "success", 200, seconds, 200, 40)
        ops.observe("infer", "model_error", 500, seconds, 200, 40)
        ops.observe("other", "success", 200, seconds * i, 10, 10)
    labels = list(BASE_LABELS)
    values = list(BASE.values())
    bins = Counter("vigil_feature_bin", "", [*labels, "feature", "bin"], registry=registry)
    missing = Counter("vigil_feature_missing", "", [*labels, "feature"], registry=registry)
    out = Counter("vigil_feature_out_of_range", "", [*labels, "feature"], registry=registry)
    for f in range(features):
        for slot in range(BINS):
            bins.labels(*values, f"feature_{f}", str(slot)).inc(10 + slot)
        missing.labels(*values, f"feature_{f}").inc(1)
        out.labels(*values, f"feature_{f}").inc(2)
    classes = Counter("vigil_prediction_class", "", [*labels, "class"], registry=registry)
    for label in ("0", "1", "2", "__other__"):
        classes.labels(*values, label).inc(300)
    for family in ("vigil_input_rows", "vigil_predictions"):
        Counter(family, "", labels, registry=registry).labels(*values).inc(1002)
    Gauge("vigil_sidecar_start_time_seconds", "", labels, registry=registry).labels(*values).set(1)
    feedback = FeedbackMetrics(dict(BASE), registry, classes=("0", "1", "2"))
    for revision in ("r0", "r1"):  # r0: predictions handed over by an older pod
        for predicted, truth, delay in ((0, 0, 30.0), (1, 0, 90.0), (2, 2, 900.0)):
            found = Labelled("joined", revision, 0.0, class_code(str(predicted)))
            feedback.joined(found, truth, "classification", delay)
    feedback.count("r1", "unknown", 3)
    lines: list[tuple[str, float | None]] = []
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#") or "start_time" in line:
            lines.append((line, None))
        else:
            prefix, value = line.rsplit(" ", 1)
            lines.append((prefix, float(value)))
    return lines


def render(lines: list[tuple[str, float | None]], cycle: int) -> str:
    scale = 1.0 + cycle * 0.05  # every counter grows a little each cycle
    return "\n".join(
        prefix if value is None else f"{prefix} {value * scale}" for prefix, value in lines
    )


def load_baseline(revision: str) -> types.ModuleType:
    """The baseline's ``direct.py``, read from git (nothing is checked out)."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:operator/vigil/metrics/direct.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = f"vigil_direct_{revision}"
    module = types.ModuleType(name)
    module.__file__ = f"{revision}:operator/vigil/metrics/direct.py"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(text, module.__file__, "exec"), module.__dict__)
    return module


def fed_source(module: types.ModuleType, texts: list[str]) -> Any:
    """The module's DirectSource, its HTTP GET replaced by the cycle's text, parsed."""
    source = module.DirectSource()
    cycle = iter(texts)

    async def scrape(_pod: PodTarget, now: float) -> Scrape:
        values, started_at = parse_sidecar_metrics(next(cycle))
        return Scrape(at=now, started_at=started_at, values=values)

    source._scrape = scrape
    return source


def timed(method: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent.append(time.process_time() - started)

    return wrapper


def kept_samples(source: Any) -> tuple[int, int]:
    """(scrapes, samples) the source holds: every deque of Scrapes in its histories."""
    scrapes = samples = 0
    for history in source._history.values():
        for part in vars(history).values():
            if isinstance(part, deque):
                scrapes += len(part)
                samples += sum(len(s.values) for s in part)
    return scrapes, samples


TARGET = RevisionTarget(
    "ns",
    "wine",
    "r1",
    HEALTH_WINDOW,
    (PodTarget("wine-r1-0", "10.0.0.1"),),
    labels_window_seconds=LABELS_WINDOW,
)


async def run(module: types.ModuleType, texts: list[str]) -> tuple[dict[str, float], list[Any]]:
    """CPU per cycle over the last MEASURED cycles (no tracing: it slows everything),
    and every cycle's window."""
    source = fed_source(module, texts)
    window_spent: list[float] = []
    source._window = timed(source._window, window_spent)
    cycles: list[float] = []
    windows = []
    for cycle in range(CYCLES):
        started = time.process_time()
        result = await source.collect([TARGET], now=1_000_000.0 + cycle * INTERVAL)
        cycles.append(time.process_time() - started)
        assert not result.errors, result.errors
        windows.append(result.windows[TARGET.key])
    figures = {
        "cycle_cpu_ms": 1000 * sum(cycles[-MEASURED:]) / MEASURED,
        "window_cpu_ms": 1000 * sum(window_spent[-MEASURED:]) / MEASURED,
        "labels_in_last_window": windows[-1].realized.labels,
    }
    return figures, windows


def _close(a: Any, b: Any) -> bool:
    """Equal but for float rounding: sums taken in another order (18.000000000000004, 18.0)."""
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        names = [f.name for f in dataclasses.fields(a)]
        return type(a) is type(b) and all(_close(getattr(a, n), getattr(b, n)) for n in names)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_close(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return bool(a == b)


async def retained(module: types.ModuleType, texts: list[str]) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    source = fed_source(module, texts)
    for cycle in range(CYCLES):
        await source.collect([TARGET], now=1_000_000.0 + cycle * INTERVAL)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    scrapes, samples = kept_samples(source)
    return {"retained_mib": (after - before) / 2**20, "scrapes": scrapes, "samples": samples}


def table(rows: Iterable[tuple[int, str, dict[str, float]]]) -> str:
    out = [
        "| features | rule | retained | scrapes | samples | collect CPU/cycle | window CPU/cycle |",
        "|---|---|---|---|---|---|---|",
    ]
    for features, rule, r in rows:
        out.append(
            f"| {features} | {rule} | {r['retained_mib']:.2f} MiB | {r['scrapes']:.0f} | "
            f"{r['samples']:.0f} | {r['cycle_cpu_ms']:.1f} ms | {r['window_cpu_ms']:.1f} ms |"
        )
    return "\n".join(out)


async def main_async(baseline: str, sizes: list[int]) -> dict[str, Any]:
    rules = {f"baseline {baseline}": load_baseline(baseline), "work tree": current_direct}
    results: dict[str, Any] = {}
    rows = []
    for features in sizes:
        lines = template(features)
        texts = [render(lines, cycle) for cycle in range(CYCLES)]
        figures = {}
        windows = []
        for rule, module in rules.items():
            cpu, seen = await run(module, texts)
            measured = cpu | await retained(module, texts)
            figures[rule] = measured
            windows.append(seen)
            rows.append((features, rule, measured))
            print(f"{features} features, {rule}: {measured}", flush=True)
        old, new = figures.values()
        # The same scrapes must give the same figures, every cycle, under both rules.
        assert _close(windows[0], windows[1]), "the two rules' windows differ"
        figures["ratio"] = {
            key: new[key] / old[key] for key in ("retained_mib", "cycle_cpu_ms", "window_cpu_ms")
        }
        results[str(features)] = figures
    print(table(rows))
    for features in sizes:
        print(f"{features} features, work tree / baseline: {results[str(features)]['ratio']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--features", default="13,40")
    args = parser.parse_args()
    sizes = [int(s) for s in args.features.split(",")]
    results = asyncio.run(main_async(args.baseline, sizes))
    write_record("retention-last-run.json", args.baseline, results)


def write_record(file_name: str, baseline: str, results: dict[str, Any]) -> None:
    """A run's results beside this file, with when, where and under what load."""
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "baseline": baseline,
        "results": results,
    }
    out = Path(__file__).with_name(file_name)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
