"""What labels cost a sidecar: recording predictions, joining labels here and at a peer.

Not a test: it prints one JSON line. In one process, two feedback services
(two pods' sidecars, each with the default join store of 250 000 rows) on
loopback. Pod A records N predictions (as its monitoring task does after
parsing an answer); then batches of 10 000 labels are posted to A (joined
locally) and to B (B does not hold them: one peer call to A, which joins
them). Reported: microseconds per recorded prediction, per label joined
here and per label joined through a peer (wall time of the whole request,
client included), and the store's memory bound.

Usage: ``python bench/sidecar/feedback_ingest.py [--predictions 300000]`` (more
than the store holds: the oldest are evicted, and only labels for held
predictions are sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from vigil.sidecar.config import FeedbackSettings, Settings  # noqa: E402
from vigil.sidecar.feedback import FeedbackMetrics, FeedbackService  # noqa: E402
from vigil.sidecar.monitor import Monitor, ReferenceState  # noqa: E402

BATCH = 10_000


def service(revision: str) -> FeedbackService:
    registry = CollectorRegistry(auto_describe=False)
    base = {"model": "m", "version": "1", "revision": revision, "role": "stable"}
    monitor = Monitor(
        Settings(max_features=0),
        base=base,
        registry=registry,
        reference=ReferenceState(None, "no_reference"),
    )
    settings = FeedbackSettings(
        enabled=True, host="127.0.0.1", port=0, labels_per_second=1e9, burst_labels=10**9
    )
    metrics = FeedbackMetrics(base, registry, ("0", "1", "2"))
    return FeedbackService(
        settings, revision=revision, task="classification", monitor=monitor, metrics=metrics
    )


async def post(session: aiohttp.ClientSession, address: str, labels: list[dict]) -> dict:
    async with session.post(
        f"http://{address}/vigil/v1/feedback", data=json.dumps({"labels": labels})
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


async def main(predictions: int) -> None:
    rss_before = rss_mib()
    a, b = service("a"), service("b")
    await a.start()
    await b.start()
    a.peers.entries, b.peers.entries = (b.address,), (a.address,)
    started = time.perf_counter()
    now = time.time()
    for n in range(predictions):  # ids made on the fly: only the store's memory grows
        a.record(f"order-{n}", now, [n % 3])
    record_us = (time.perf_counter() - started) / predictions * 1e6
    # Both stores exist; A's is full when predictions >= its capacity.
    rss_after = rss_mib()
    held = min(predictions, a.store.capacity)  # the oldest were evicted
    ids = [f"order-{n}" for n in range(predictions - held, predictions)]
    predictions = held
    half = predictions // 2
    here: list[float] = []
    peer: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for start in range(0, half, BATCH):
            labels = [{"id": i, "truth": 1} for i in ids[start : min(start + BATCH, half)]]
            t = time.perf_counter()
            summary = await post(session, a.address, labels)
            here.append((time.perf_counter() - t) / len(labels) * 1e6)
            assert summary["joined"] == len(labels), summary
        for start in range(half, predictions, BATCH):
            labels = [{"id": i, "truth": 1} for i in ids[start : start + BATCH]]
            t = time.perf_counter()
            summary = await post(session, b.address, labels)
            peer.append((time.perf_counter() - t) / len(labels) * 1e6)
            assert summary["joined"] == len(labels), summary
    await a.stop()
    await b.stop()
    print(
        json.dumps(
            {
                "predictions": predictions,
                "record_us_per_prediction": round(record_us, 2),
                "join_here_us_per_label": round(sorted(here)[len(here) // 2], 2),
                "join_at_peer_us_per_label": round(sorted(peer)[len(peer) // 2], 2),
                "store_bytes": a.store.nbytes,
                "store_rows": a.store.rows,
                "rss_mib_growth_two_stores_one_filled": round(rss_after - rss_before, 1),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=300_000)
    asyncio.run(main(parser.parse_args().predictions))
