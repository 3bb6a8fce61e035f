"""Benchmark: the direct source over long windows, and among many ModelDeployments.

Two questions, each for the working tree's ``DirectSource`` and, where it
finishes in minutes, a baseline's (the ``direct.py`` of ``--baseline``, read
with ``git show`` as ``retention.py`` does; nothing in the work tree changes):

- **long windows**: one pod scraped every 30 s (the sidecar's names and
  labels, every scrape through the real parser, no HTTP) until a window of
  ``monitoring.window`` (whole scrapes) or ``performance.window`` (ground
  truth) is full: retained memory (tracemalloc), scrapes kept, and the CPU
  of the window pass per cycle once full (a run without tracing). The
  baseline keeps every scrape, so its CPU per cycle grows with the window
  and its long runs take hours: only the shorter ones are run for it. Both
  rules' last windows are compared: the checkpoints may start a window up to
  window/120 (and a scrape interval) early.
- **many ModelDeployments**: 2 000 of them, 2 pods each, a few cycles of the
  health loop's collection (every target in one) and one rollout's (its two
  revisions): CPU per collection and of its window pass.

Usage: .venv/bin/python bench/health/long_windows.py [--baseline HEAD] [--quick]
       [--cases "monitoring.window 24h,..."] [--models 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
import types
from collections import deque
from typing import Any

from retention import load_baseline, render, template, timed, write_record

from vigil.core.window import Scrape
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics import direct as current_direct
from vigil.metrics.exposition import parse_sidecar_metrics

INTERVAL = 30.0
T0 = 1_000_000.0
MEASURED = 20
HOUR = 3600.0
REQUESTS = "vigil_request_outcomes_total"


def kept(source: Any) -> dict[str, int]:
    """Scrapes the source holds, by part (``recent``: whole, ``truth``: ground truth)."""
    out = {"recent": 0, "truth": 0}
    for history in source._history.values():
        for name, part in vars(history).items():
            if isinstance(part, deque):
                out[name] += len(part)
    return out


async def one_pod(
    module: types.ModuleType,
    lines: list[tuple[str, float | None]],
    window: float,
    labels: float,
    trace: bool,
) -> dict[str, Any]:
    """Collect until the longer window is full and 20 more cycles; figures of the last."""
    cycles = int(max(window, labels) / INTERVAL) + MEASURED + 6
    source = module.DirectSource()
    count = iter(range(cycles))

    async def scrape(_pod: PodTarget, now: float) -> Scrape:
        values, started_at = parse_sidecar_metrics(render(lines, next(count)))
        return Scrape(at=now, started_at=started_at, values=values)

    source._scrape = scrape
    spent: list[float] = []
    source._window = timed(source._window, spent)
    target = RevisionTarget(
        "ns", "wine", "r1", window, (PodTarget("p0", "10.0.0.1"),), labels_window_seconds=labels
    )
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else 0
    result = None
    for cycle in range(cycles):
        result = await source.collect([target], now=T0 + cycle * INTERVAL)
    assert result is not None and not result.errors, result
    gc.collect()
    figures: dict[str, Any] = kept(source)
    if trace:
        figures["retained_mib"] = (tracemalloc.get_traced_memory()[0] - before) / 2**20
        tracemalloc.stop()
    else:
        figures["window_cpu_ms"] = 1000 * sum(spent[-MEASURED:]) / MEASURED
    window_figures = result.windows[target.key]
    figures["requests"] = window_figures.requests
    figures["labels"] = window_figures.realized.labels
    return figures


async def long_windows(
    rules: dict[str, types.ModuleType], quick: bool, only: list[str]
) -> dict[str, Any]:
    cases = [
        # name, features, monitoring.window, performance.window, rules that finish soon
        ("monitoring.window 6h", 20, 6 * HOUR, HOUR, list(rules)),
        ("monitoring.window 24h", 20, 24 * HOUR, HOUR, ["work tree"]),
        ("performance.window 24h", 13, 300.0, 24 * HOUR, list(rules)),
        ("performance.window 168h", 13, 300.0, 168 * HOUR, ["work tree"]),
    ]
    if quick:
        cases = [(*c[:4], ["work tree"]) for c in cases[:1]]
    if only:
        cases = [c for c in cases if c[0] in only]
    out: dict[str, Any] = {}
    for name, features, window, labels, which in cases:
        lines = template(features)
        for rule in which:
            module = rules[rule]
            figures = await one_pod(module, lines, window, labels, trace=True)
            figures |= {
                k: v
                for k, v in (await one_pod(module, lines, window, labels, trace=False)).items()
                if k == "window_cpu_ms"
            }
            out[f"{name}, {rule}"] = figures
            print(f"{name}, {rule}: {figures}", flush=True)
    return out


async def many_models(module: types.ModuleType, models: int, cycles: int) -> dict[str, float]:
    """The health loop's collections of ``models`` ModelDeployments (2 pods each), then one
    rollout's collection: CPU of each and of its window pass."""
    source = module.DirectSource()
    key = (REQUESTS, (("origin", "live"), ("outcome", "success")))

    async def scrape(_pod: PodTarget, now: float) -> Scrape:
        return Scrape(now, 1.0, {key: now - T0})

    source._scrape = scrape
    spent: list[float] = []
    source._window = timed(source._window, spent)

    def pods(i: int, revision: str) -> tuple[PodTarget, ...]:
        return tuple(PodTarget(f"m{i}-{revision}-{p}", "10.0.0.1") for p in range(2))

    health = [
        RevisionTarget("ns", f"m{i}", "r1", 300.0, pods(i, "r1"), labels_window_seconds=HOUR)
        for i in range(models)
    ]
    figures: dict[str, float] = {}
    for cycle in range(cycles):
        spent.clear()
        started = time.process_time()
        await source.collect(health, now=T0 + cycle * INTERVAL)
        figures["health_collect_cpu_s"] = time.process_time() - started
        figures["health_window_pass_cpu_s"] = sum(spent)
    rollout = [RevisionTarget("ns", "m0", r, 120.0, pods(0, r)) for r in ("r2", "r1")]
    rounds = []
    for i in range(20):  # 10 s apart, past the last sweep
        spent.clear()
        started = time.process_time()
        await source.collect(rollout, now=T0 + cycles * INTERVAL + 10 * i)
        rounds.append((time.process_time() - started, sum(spent)))
    figures["rollout_collect_cpu_ms"] = 1000 * sum(r[0] for r in rounds) / len(rounds)
    figures["rollout_window_pass_cpu_ms"] = 1000 * sum(r[1] for r in rounds) / len(rounds)
    return figures


async def main_async(baseline: str, quick: bool, only: list[str], models: int) -> dict[str, Any]:
    rules = {f"baseline {baseline}": load_baseline(baseline), "work tree": current_direct}
    results: dict[str, Any] = {"long_windows": await long_windows(rules, quick, only)}
    models = 200 if quick else models
    for rule, module in rules.items() if models else ():
        figures = await many_models(module, models, 4)
        results[f"{models} ModelDeployments, {rule}"] = figures
        print(f"{models} ModelDeployments, {rule}: {figures}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="HEAD")
    parser.add_argument("--quick", action="store_true", help="one short case, 200 models")
    parser.add_argument("--cases", default="", help="the long-window cases to run, by name")
    parser.add_argument("--models", type=int, default=2000, help="0: no many-models run")
    args = parser.parse_args()
    only = [name for name in args.cases.split(",") if name]
    results = asyncio.run(main_async(args.baseline, args.quick, only, args.models))
    if not args.quick and not only:
        write_record("long-windows-last-run.json", args.baseline, results)


if __name__ == "__main__":
    main()
