"""One hour of a wine model's life as its sidecars would have counted it, for Prometheus.

A demo-like story, every 15 s: revision ``a1`` (version 1) serves from the
start; its inputs drift (alcohol shifted up) from minute 15 to 25; a bad
version 2 (``b2``, more errors, worse answers) is shadowed and canaried from
minute 30 and rolled back at 36; a good version 2 (``c2``) goes through the
same steps from minute 40 and is promoted at 50. Labels arrive for a third of
the predictions. Rows are scikit-learn's wine data, binned against the
reference profile's edges with the sidecar's own rule
(:func:`vigil.profile.bins.bin_index`); the series carry the labels the
scrape job adds (namespace, pod, model_deployment).

:func:`openmetrics` writes what ``promtool tsdb create-blocks-from
openmetrics`` loads; :func:`model_deployment` and :func:`events` are the
object and the Events a report reads beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_wine

from vigil.common.times import format_unix
from vigil.core import metric_names as names
from vigil.core.metric_names import bucket, count_of, sum_of, total
from vigil.plugin.report.figures import Measured
from vigil.plugin.report.sources import choose_step, from_prometheus
from vigil.profile import ReferenceProfile, build_profile
from vigil.profile.bins import bin_index

NAMESPACE = "vigil-demo"
NAME = "wine"
STEP = 15.0
SPAN = 3600.0
SHADOW_MINUTES = 3  # each candidate's shadow step (see events())
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)


@dataclass(frozen=True)
class Revision:
    name: str
    version: str
    serves: tuple[float, float]  # minutes
    rate: float  # requests per second while it serves
    error_share: float
    latency: float  # median seconds
    accuracy: float


REVISIONS = (
    Revision("a1", "1", (0, 60), 8.0, 0.004, 0.018, 0.93),
    Revision("b2", "2", (30, 36), 3.0, 0.09, 0.03, 0.55),
    Revision("c2", "2", (40, 60), 3.0, 0.003, 0.016, 0.95),
)


def reference() -> tuple[ReferenceProfile, np.ndarray, np.ndarray]:
    data = load_wine()
    x = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target)
    profile = build_profile(
        x,
        predictions=y,
        feature_names=[str(f) for f in data.feature_names],
        task="classification",
        model_name=NAME,
        model_version="1",
    )
    return profile, x, y


def _rate_at(rev: Revision, minute: float) -> float:
    low, high = rev.serves
    if not low <= minute < high:
        return 0.0
    if rev.name == "a1" and minute >= 50:  # c2 promoted: a1 is gone
        return 0.0
    if rev.name == "c2" and minute >= 50:
        return 8.0
    return rev.rate


def _origin(rev: Revision, minute: float) -> str:
    """What the sidecar labels a request with: a candidate's first step is a shadow
    step (copies of live traffic), its later ones canary steps (live requests)."""
    if rev.name != "a1" and minute < rev.serves[0] + SHADOW_MINUTES:
        return names.ORIGIN_SHADOW
    return names.ORIGIN_LIVE


def _label(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def openmetrics(
    end: float, seed: int = 7, namespace: str = NAMESPACE
) -> tuple[str, ReferenceProfile]:
    """The hour before ``end`` as OpenMetrics text (cumulative counters), and the profile."""
    profile, x, y = reference()
    rng = np.random.default_rng(seed)
    start = end - SPAN
    alcohol = list(profile.feature_names).index("alcohol")
    classes = [str(c) for c in sorted(set(y.tolist()))]
    counts: dict[tuple[str, str], float] = defaultdict(float)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    steps = int(SPAN / STEP)
    for i in range(steps + 1):
        at = start + i * STEP
        minute = i * STEP / 60
        serving = [rev for rev in REVISIONS if _rate_at(rev, minute) > 0]
        touched: set[tuple[str, str]] = set()  # the series of the pods alive now
        for rev in serving:
            base = {
                "namespace": namespace,
                "model_deployment": NAME,
                "revision": rev.name,
                "pod": f"{NAME}-{rev.name}-0",
                "model": NAME,
                "version": rev.version,
            }
            n = int(rng.poisson(_rate_at(rev, minute) * STEP))
            rows = rng.integers(0, len(x), n)
            sample = x[rows].copy()
            if 15 <= minute < 25:
                sample[:, alcohol] += 1.4
            truth = y[rows]
            right = rng.random(n) < rev.accuracy
            predicted = np.where(right, truth, (truth + rng.integers(1, 3, n)) % 3)
            failed = rng.random(n) < rev.error_share
            latencies = rng.lognormal(math.log(rev.latency), 0.45, n)

            def add(
                name: str,
                value: float,
                base: dict[str, str] = base,
                touched: set[tuple[str, str]] = touched,
                **extra: str,
            ) -> None:
                key = (name, _label(**base, **extra))
                counts[key] += value
                touched.add(key)

            origin = _origin(rev, minute)
            for outcome, count in (("success", n - failed.sum()), ("server_error", failed.sum())):
                add(
                    total(names.REQUESTS),
                    float(count),
                    endpoint="infer",
                    outcome=outcome,
                    origin=origin,
                )
            for bound in LATENCY_BOUNDS:
                le = "+Inf" if math.isinf(bound) else f"{bound:g}"
                add(
                    bucket(names.REQUEST_DURATION),
                    float((latencies <= bound).sum()),
                    endpoint="infer",
                    le=le,
                    origin=origin,
                )
            add(sum_of(names.REQUEST_DURATION), float(latencies.sum()), endpoint="infer")
            add(count_of(names.REQUEST_DURATION), float(n), endpoint="infer")
            add(total(names.INPUT_ROWS), float(n))
            for column, feature in enumerate(profile.features):
                assert feature.edges is not None
                slots = np.bincount(
                    bin_index(sample[:, column], feature.edges), minlength=len(feature.proportions)
                )
                for slot, count in enumerate(slots):
                    add(total(names.FEATURE_BIN), float(count), feature=feature.name, bin=str(slot))
                add(total(names.FEATURE_MISSING), 0.0, feature=feature.name)
                add(
                    total(names.FEATURE_OUT_OF_RANGE),
                    float(slots[0] + slots[-1]),
                    feature=feature.name,
                )
            for label in classes:
                add(
                    total(names.PREDICTION_CLASS),
                    float((predicted.astype(str) == label).sum()),
                    **{"class": label},
                )
            add(total(names.PREDICTIONS), float(n))
            add(names.PREDICTION_VALUE_SUM, float(predicted.sum()))
            add(names.PREDICTION_VALUE_SQUARES_SUM, float((predicted**2).sum()))
            candidate = next((c for c in serving if c.name != rev.name and c.name != "a1"), None)
            if rev.name == "a1" and candidate is not None:
                shadowed = float(n)
                agree = shadowed * (0.58 if candidate.name == "b2" else 0.96)
                add(total(names.SHADOW_PREDICTIONS), shadowed, target_revision=candidate.name)
                add(total(names.SHADOW_AGREEMENTS), agree, target_revision=candidate.name)
            if rev.name != "b2":
                labelled = rng.random(n) < 1 / 3
                add(total(names.FEEDBACK_LABELS), float(labelled.sum()), outcome="joined")
                for label in classes:
                    mine = labelled & (truth.astype(str) == label)
                    add(total(names.FEEDBACK_SCORED), float(mine.sum()), **{"class": label})
                    add(
                        total(names.FEEDBACK_CORRECT),
                        float((mine & right).sum()),
                        **{"class": label},
                    )
            add("vigil_model_info", 0.0)
        # A revision's pods are gone once it stops serving: its series end there.
        for key in touched:
            samples[key].append((at, counts[key] if key[0] != "vigil_model_info" else 1.0))
    lines: list[str] = []
    by_family: dict[str, list[tuple[str, list[tuple[float, float]]]]] = defaultdict(list)
    for (name, labels), points in samples.items():
        by_family[name].append((labels, points))
    for name, series in sorted(by_family.items()):
        lines.append(f"# TYPE {name} unknown")
        for labels, points in series:
            lines.extend(f"{name}{labels} {value:g} {at:.3f}" for at, value in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n", profile


@contextlib.contextmanager
def serve(
    bin_dir: Path, work: Path, port: int, namespace: str = NAMESPACE
) -> Iterator[tuple[str, float]]:
    """The hour before the returned end time in a fresh TSDB, served by a real Prometheus."""
    end = float(int(time.time()) - 60)
    text, _ = openmetrics(end, namespace=namespace)
    (work / "hour.om").write_text(text)
    blocks = [bin_dir / "promtool", "tsdb", "create-blocks-from", "openmetrics"]
    subprocess.run([*blocks, work / "hour.om", work / "tsdb"], check=True, capture_output=True)
    (work / "prometheus.yml").write_text("global: {}\n")
    url = f"http://127.0.0.1:{port}"
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "prometheus"),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"Prometheus at {url} is not ready: {work / 'prometheus.log'}")
            time.sleep(0.3)
        yield url, end
    finally:
        process.terminate()
        process.wait(30)


def measure(url: str, end: float) -> Measured:
    """The hour read back as ``kubectl vigil report`` reads it (2-minute windows)."""
    return asyncio.run(
        from_prometheus(
            url,
            NAMESPACE,
            NAME,
            start=end - SPAN,
            end=end,
            step=choose_step(SPAN),
            window_seconds=120.0,
            labels_window_seconds=120.0,
            progress=lambda _: None,
        )
    )


def _at(end: float, minute: float) -> str:
    stamp = format_unix(end - SPAN + minute * 60)
    assert stamp is not None
    return stamp


def model_deployment(end: float, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The ModelDeployment as status shows it at the end of the hour."""
    history = [
        ("c2", "2", "replacement", "Promoted", "all 3 steps passed", 50),
        ("b2", "2", "replacement", "RolledBack", "agreement 0.58 < 0.90 in 2 checks", 36),
        ("a1", "1", "new", "Deployed", "first revision", 0),
    ]
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace, "generation": 3},
        "spec": {
            "model": {"name": NAME, "version": "2"},
            "server": {"image": "vigil.local/mlserver-sklearn:1.7.1"},
            "monitoring": {
                "reference": {
                    "configMapKeyRef": {"name": "wine-reference-2", "key": "profile.json"}
                },
                "window": "2m",
                "slo": {"maxErrorRate": 0.05, "maxLatencyP95": "500ms"},
                "drift": {"method": "psi", "warning": 0.1, "threshold": 0.2},
            },
            "rollout": {"analysis": {"minAgreement": 0.9, "maxPredictionShift": 0.5}},
        },
        "status": {
            "phase": "Healthy",
            "stable": {"revision": "c2", "modelVersion": "2"},
            "history": [
                {
                    "revision": rev,
                    "modelVersion": version,
                    "change": change,
                    "outcome": outcome,
                    "reason": reason,
                    "at": _at(end, minute),
                }
                for rev, version, change, outcome, reason, minute in history
            ],
        },
    }


def events(end: float) -> list[dict[str, Any]]:
    said = [
        (0, "Normal", "Deployed", "revision a1 (model wine version 1) deployed with 2 replica(s)"),
        (15.5, "Warning", "DriftAboveThreshold", "psi 0.41 >= threshold 0.2 over 2m: alcohol 0.41"),
        (25.5, "Normal", "NoDrift", "psi 0.03 < warning 0.1 on every feature over 2m"),
        (
            30,
            "Normal",
            "RolloutStarted",
            "revision b2 (replacement: model wine version 2) starting with 3 step(s)",
        ),
        (33, "Normal", "StepAdvanced", "revision b2: shadow passed, canary 20%"),
        (36, "Warning", "RolledBack", "revision b2 rolled back: agreement 0.58 < 0.90 in 2 checks"),
        (
            40,
            "Normal",
            "RolloutStarted",
            "revision c2 (replacement: model wine version 2) starting with 3 step(s)",
        ),
        (43, "Normal", "StepAdvanced", "revision c2: shadow passed, canary 20%"),
        (46, "Normal", "StepAdvanced", "revision c2: canary 20% passed, canary 50%"),
        (50, "Normal", "Switched", "live traffic switched from revision a1 to revision c2"),
    ]
    return [
        {"type": kind, "reason": reason, "message": message, "lastTimestamp": _at(end, minute)}
        for minute, kind, reason, message in said
    ]
