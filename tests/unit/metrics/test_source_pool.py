"""One metrics source per key, shared by the health loop and the rollouts."""

from __future__ import annotations

from collections.abc import Sequence

from vigil.metrics import Collection, RevisionTarget
from vigil.metrics.pool import SourceKey, SourcePool

DIRECT: SourceKey = ("direct", "")
PROMETHEUS: SourceKey = ("prometheus", "http://prometheus:9090")


class Recorded:
    name = "recorded"

    def __init__(self) -> None:
        self.closed = False

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        return Collection()

    async def close(self) -> None:
        self.closed = True


def recording_pool() -> tuple[SourcePool, dict[SourceKey, Recorded]]:
    made: dict[SourceKey, Recorded] = {}

    def factory(key: SourceKey) -> Recorded:
        made[key] = Recorded()
        return made[key]

    return SourcePool(factory), made


class TestASourceIsClosed:
    async def test_when_no_model_names_it_and_no_rollout_asked_since_the_last_sweep(
        self,
    ) -> None:
        pool, made = recording_pool()
        pool.get(DIRECT)
        pool.get(PROMETHEUS)
        prometheus = made[PROMETHEUS]
        # The health loop names the direct source only; a rollout read Prometheus.
        await pool.close_unnamed([DIRECT])
        assert not prometheus.closed
        await pool.close_unnamed([DIRECT])
        assert prometheus.closed
        assert not made[DIRECT].closed
        assert pool.get(PROMETHEUS) is not prometheus  # made again when asked again

    async def test_all_on_close(self) -> None:
        pool, made = recording_pool()
        pool.get(DIRECT)
        pool.get(PROMETHEUS)
        await pool.close()
        assert all(source.closed for source in made.values())
