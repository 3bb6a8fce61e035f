"""The serving revision's history entry outlives the ten-entry limit.

Candidates superseded one after the other fill status.history; trimmed oldest first, the
stable revision's entry went too, and the next cycle wrote it again as Promoted "found
serving live traffic" with that cycle's time: a first revision lost its Deployed entry
and the date it came.
"""

from __future__ import annotations

from core_world import serving, spec

STEPPED = {"replacement": {"steps": [{"canary": {"weight": 20, "duration": "60s"}}]}}


def test_a_first_revision_keeps_its_deployed_entry_past_ten_superseded_candidates() -> None:
    world, stable = serving(STEPPED)
    (first,) = (h for h in world.status["history"] if h["revision"] == stable)
    for version in range(2, 14):
        world.set_spec(spec(str(version), 2, rollout=STEPPED))
        world.reconcile(60)
    history = world.status["history"]
    assert len(history) == 10
    assert world.status["stable"]["revision"] == stable
    assert [h for h in history if h["revision"] == stable] == [first]
    assert first["outcome"] == "Deployed"
    # The others are the newest superseded candidates, the stable's entry last (oldest).
    assert history[-1] == first
    assert all(h["outcome"] == "Superseded" for h in history[:-1])
