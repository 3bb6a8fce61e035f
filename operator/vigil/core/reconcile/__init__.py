"""The reconcile decision: from what is (an observation) to what to do (a plan).

Pure evaluation in the manner of Argo Rollouts: :func:`decide` reads a
snapshot (the ModelDeployment and its live children), returns the writes to
make, the Events to post and the complete new status, and touches nothing.
The operator applies the writes in order, then persists the status once.
One module per concern, as Argo's rollout/ has one file per strategy:

- :mod:`~vigil.core.reconcile.runbook`: :func:`decide`, the runbook below;
- :mod:`~vigil.core.reconcile.stable`: the first deployment, keeping the stable;
- :mod:`~vigil.core.reconcile.bluegreen`: a replacement without steps;
- :mod:`~vigil.core.reconcile.stepped`: a replacement with steps (``rollout.decide``);
- :mod:`~vigil.core.reconcile.switch`: the switch that ends both;
- :mod:`~vigil.core.reconcile.rollback`: rolled back, failed, and the hold after;
- :mod:`~vigil.core.reconcile.requests`: a person's request that cannot apply to the attempt;
- :mod:`~vigil.core.reconcile.shadow`: the stable's shadow copies;
- :mod:`~vigil.core.reconcile.spanning`: replica ratio's Service across both revisions;
- :mod:`~vigil.core.reconcile.report`: status assembly;
- :mod:`~vigil.core.reconcile.cycle` and :mod:`~vigil.core.reconcile.plan`: the
  working state of one decision, its input and its output.

The state machine, Flagger-style (each line is a step of the runbook)::

    a person's request answered before         -> clear it only
    a person's request with an unknown verb    -> refuse it (RequestRefused)
    spec invalid or names too long             -> report InvalidSpec, touch nothing but
                                                  candidates of another revision (superseded:
                                                  the stable alone)
        a candidate it still makes (also when  -> held out of traffic (weight 0, its pods
          its rollout or monitoring cannot be     kept): the stable alone; once fixed, the
          used: never judged meanwhile)           rollout resumes at its step, the step's
                                                  evidence started again
        a candidate serving in the place of a  -> it serves on (neither held nor superseded)
          stable not yet available (made again)   until the stable is available
    a foreign Service holds our name           -> report ServiceConflict, touch nothing (a
                                                  switch cut short before its status write
                                                  is recorded: Switched, history, its bake)
    reference profile missing (new revision)   -> supersede other candidates, hold, report
                                                  ReferenceNotFound, recheck
    the stable: the revision status names, else the Service's, else the Deployment labelled
    stable (a Warning RolloutRetried then: the rollout starts again against it)
    stable lost (named, its Deployment gone):
        the spec makes it                      -> make it again (Warning Deployed), Degraded
                                                  until its pods are back, history kept
        a person promotes, or no steps         -> deploy the desired revision in its place
                                                  (Warning Deployed), candidates superseded
        otherwise (steps, paused, rejected)    -> hold (RolloutFailed): live traffic to the
                                                  lost stable alone, until the spec goes back
                                                  to it or a person promotes
    no stable revision                         -> deploy the revision as stable ("new")
    stable never served (0 ready pods),        -> deployed as new in its place at once (no
      desired differs                             steps); the never-served one removed
    stable revision == desired revision        -> keep it: scale in place, abort any candidate
        a switch cut short before its status   -> record it (Switched, Promoted)
        lost pods, spec unchanged              -> Degraded (ReplicasUnavailable) until back
        never Ready yet                        -> Deploying (Pending until a pod is ready)
    stable revision != desired revision        -> replace it; older candidates superseded
        a switch cut short before its status   -> record it first (Switched, Promoted), the
          (or a spec it cannot act on)            old stable removed, no candidate retired
        a failed bake still going back         -> finish going back first: a spec set back
                                                  to the previous revision is answered by
                                                  it (made again if deleted by hand);
                                                  another waits (Progressing says so),
                                                  then rolls out against the previous one
                                                  (its Deployment deleted: given up, against
                                                  the promoted one, BakeRollbackFailed)
      without steps (blue/green):
        paused (spec.paused)                   -> hold, do not even start the candidate
        candidate not yet available            -> start it and wait (stable keeps serving)
        candidate failed                       -> report RolloutFailed (stable keeps serving)
        candidate available                    -> switch: move the Service, delete the old
      with steps (vigil.core.rollout.decide each cycle):
        ended RolledBack or Failed before      -> hold: the stable alone, the candidate
                                                  removed, until the spec changes or a
                                                  person retries (then from step 1)
        a person promoted, aborted, paused,    -> taken into the rollout state, or refused
          resumed                                 with the reason
        rolled back or failed                  -> the stable alone now; the candidate is
                                                  removed by the next cycle, once the
                                                  status records the outcome
        promotion decided                      -> scale the candidate to full capacity
                                                  (Promoting), then switch (two phases)
        otherwise                              -> the step's traffic (replicas, selector,
                                                  route, shadow copies) and its report
    a live revision's settings ConfigMap gone  -> made again from its Deployment's copy
      (not the spec's revision: the stable       (the same bytes: no pod restarts)
      during a rollout)
    every request                              -> answered in status.lastRequest

Safety rules: the Service is only ever moved to a revision whose Deployment
is available (all replicas ready), and the old revision is deleted only
after the move was written: the Service never selects zero Ready pods
during a switch. The one exception: a revision replacing a stable that never
served takes live traffic before it is available, as any first revision does
(nothing it replaces could answer). With a route outside the operator's children (a Gateway
API HTTPRoute), every plan says where it points, and a plan's actions run
in one order: writes, then the route, then scale-downs and deletions. So the
route names only Services that exist, and a revision loses its pods or its
Service only once the route has left it. Under replica ratio the Service starts spanning
both revisions only once the candidate is down to its step's pods (seen, not
just written): a scale-down ordered after it would give the candidate its extra pods.
"""

# The package's face: what the operator and the tests use (``import X as X`` re-exports).
from vigil.core.reconcile.plan import RECHECK_SECONDS as RECHECK_SECONDS
from vigil.core.reconcile.plan import Action as Action
from vigil.core.reconcile.plan import Apply as Apply
from vigil.core.reconcile.plan import Delete as Delete
from vigil.core.reconcile.plan import Event as Event
from vigil.core.reconcile.plan import Observation as Observation
from vigil.core.reconcile.plan import Plan as Plan
from vigil.core.reconcile.plan import Route as Route
from vigil.core.reconcile.report import has_served as has_served
from vigil.core.reconcile.report import refused_write_status as refused_write_status
from vigil.core.reconcile.runbook import decide as decide
from vigil.core.reconcile.runbook import find_stable_revision as find_stable_revision
