"""Benchmark: how often the rollout gates get it wrong, in simulated rollouts.

Thousands of rollouts per case, in simulated time, with no cluster: the
real ``vigil.core.rollout.decide`` and ``vigil.core.analysis`` judge
windows drawn the way the sidecars count and the direct metrics source
reduces them (bench/gates/gatesim, bench/README.md "Gate error rates").
Per (policy, case, rate, judge) it reports the share of rollouts that
ended the wrong way (an A/A candidate, or one within the policy's limits,
rolled back or failed; an A/B candidate promoted) with an
exact 95 % interval, and the time and live requests to the decision.

Every rollout has its own seed (seed, case, rate, index): a run is
reproducible whatever ``--jobs``, and judges see the same streams.

Usage: .venv/bin/python bench/gates/run.py [--aa-rollouts 2000] [--rollouts 500]
       [--rates 1,10,100] [--cases A/A,error] [--policies replacement,tweak]
       [--judge operator --judge operator:confidence=0.95] [--jobs 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from gatesim.judges import JudgeChoice
from gatesim.report import CellStats, cell_stats, markdown
from gatesim.simulate import POLICY_EXAMPLES, Outcome, Task, Timing, run_task
from gatesim.world import Baseline, find_cases

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _rates(text: str) -> list[float]:
    return [float(r) for r in text.split(",") if r]


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--", "operator") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--aa-rollouts", type=int, default=2000, help="per A/A or within-the-limit cell"
    )
    parser.add_argument("--rollouts", type=int, default=500, help="per A/B cell")
    parser.add_argument("--rates", type=_rates, default=[1.0, 10.0, 100.0], help="requests/s")
    parser.add_argument("--cases", type=_names, default=[], help="names or families; all")
    parser.add_argument("--policies", type=_names, default=list(POLICY_EXAMPLES))
    parser.add_argument(
        "--judge",
        action="append",
        default=[],
        help="judge[:analysisField=value,...], repeatable; default: operator",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--chunk", type=int, default=100, help="rollouts per task")
    parser.add_argument("--eager", action="store_true", help="compute every cycle's figures")
    parser.add_argument("--replicas", type=int, default=Timing().replicas)
    parser.add_argument("--error-rate", type=float, default=Baseline().error_rate)
    parser.add_argument("--p95", type=float, default=Baseline().latency_p95, help="seconds")
    parser.add_argument("--features", type=int, default=Baseline().features)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()

    cases = find_cases(args.cases)
    if args.list:
        for case in cases:
            print(f"{case.family:10} {case.name:30} {case.summary}")
        return 0
    judges = args.judge or ["operator"]
    for judge in judges:
        JudgeChoice.parse(judge)  # fail on a typo before hours of work
    for policy in args.policies:
        if policy not in POLICY_EXAMPLES:
            parser.error(f"unknown policy {policy!r}; known: {', '.join(POLICY_EXAMPLES)}")
    baseline = Baseline(error_rate=args.error_rate, latency_p95=args.p95, features=args.features)
    timing = Timing(replicas=args.replicas)
    cells = [
        (policy, case, rate, judge)
        for policy in args.policies
        for case in cases
        for rate in args.rates
        for judge in judges
    ]
    tasks: list[tuple[int, Task]] = []
    for index, (policy, case, rate, judge) in enumerate(cells):
        total = args.aa_rollouts if case.acceptable else args.rollouts
        for first in range(0, total, args.chunk):
            count = min(args.chunk, total - first)
            task = Task(judge, policy, case.name, rate, first, count, args.seed)
            tasks.append((index, replace(task, eager=args.eager, baseline=baseline, timing=timing)))

    started, load_before = time.time(), os.getloadavg()
    outcomes: list[list[Outcome]] = [[] for _ in cells]
    pool = multiprocessing.Pool(args.jobs) if args.jobs > 1 else None
    try:
        results = (pool.imap if pool else map)(run_task, [t for _, t in tasks])
        for done, ((index, _), result) in enumerate(zip(tasks, results, strict=True), 1):
            outcomes[index].extend(result)
            if done % 20 == 0 or done == len(tasks):
                print(f"  {done}/{len(tasks)} tasks, {time.time() - started:.0f}s", file=sys.stderr)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    wall = time.time() - started
    load_after = os.getloadavg()

    stats: list[CellStats] = [
        cell_stats(policy, case, rate, judge, outcomes[i])
        for i, (policy, case, rate, judge) in enumerate(cells)
    ]
    rollouts = sum(s.n for s in stats)
    when = dt.datetime.now(dt.UTC)
    meta = {
        "date": when.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "wallSeconds": round(wall, 1),
        "rollouts": rollouts,
        "jobs": args.jobs,
        "cpus": os.cpu_count(),
        "loadAverageBefore": [round(x, 2) for x in load_before],
        "loadAverageAfter": [round(x, 2) for x in load_after],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "seed": args.seed,
        "eager": args.eager,
        "baseline": asdict(baseline),
        "timing": asdict(timing),
        "argv": sys.argv[1:],
    }
    table = markdown(stats, judges)
    header = (
        f"{meta['date']}, commit {meta['commit']}: {rollouts} rollouts in {wall:.0f} s "
        f"({args.jobs} process(es), load average {load_before[0]:.1f} -> {load_after[0]:.1f}); "
        f"stable: {baseline.error_rate:.2%} errors, p95 {baseline.latency_p95 * 1000:.0f} ms, "
        f"{baseline.features} features; {timing.replicas} replica(s)"
    )
    print(header + "\n\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / when.strftime("%Y-%m-%dT%H%M")
    stem.with_suffix(".md").write_text(header + "\n\n" + table, encoding="utf-8")
    stem.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "cells": [s.to_dict() for s in stats]}, indent=1) + "\n",
        encoding="utf-8",
    )
    print(f"\nwritten: {stem}.md, {stem}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
