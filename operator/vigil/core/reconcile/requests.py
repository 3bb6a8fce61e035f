"""A person's request against the rollout attempt it meets: refused when it cannot apply.

``kubectl vigil promote|abort|pause|resume`` names the candidate the person saw (the
serving revision when status showed none), and the operator may read the request only
after a spec change (a Git sync, the operator down meanwhile) started another attempt.
``spec.paused`` is the spec's hold: only the spec lifts it, so a promote (like a resume,
refused in ``rollout.decide``) does not pass it; an abort does (the stable serves).
"""

from __future__ import annotations

from vigil.core.reconcile.cycle import Cycle
from vigil.core.vocabulary import RequestVerb

#: The verbs that act on a running attempt (retry starts one again).
STATE_VERBS = (RequestVerb.PROMOTE, RequestVerb.ABORT, RequestVerb.PAUSE, RequestVerb.RESUME)


def refuse_what_cannot_apply(cycle: Cycle, revision: str) -> None:
    """Refuse a state verb that cannot be meant for ``revision``'s attempt: it names another
    revision, or none while no status has shown this attempt yet (a hand-written annotation
    placed before it started: a promote would promote it unjudged); and a promote while
    ``spec.paused`` holds the rollout."""
    request = cycle.obs.request
    if request is None or cycle.verb not in STATE_VERBS:
        return
    serving = (cycle.obs.status.get("stable") or {}).get("revision")
    if request.revision and request.revision == serving:  # the plugin's: no rollout in view
        cycle.answer(
            False,
            f"placed while revision {serving} served with no rollout in view; look at revision "
            f"{revision}'s (kubectl vigil status) and ask again",
        )
    elif request.revision not in (None, "", revision):
        cycle.answer(
            False, f"it was for revision {request.revision}; revision {revision} is rolling out now"
        )
    elif not request.revision and cycle.recorded_start(revision) is None:
        cycle.answer(
            False,
            f"placed before revision {revision}'s rollout started: look at it "
            "(kubectl vigil status) and ask again",
        )
    elif cycle.verb == RequestVerb.PROMOTE and cycle.spec is not None and cycle.spec.paused:
        cycle.answer(False, "spec.paused holds the rollout: set it to false to promote")
