"""The rollout gates: each judges its own evidence with confidence.

A gate compares what the candidate did over the step so far
(:class:`~vigil.core.analysis.CandidateFigures`) with its threshold and
says one of three things (:class:`~vigil.core.vocabulary.GateVerdict`):

* ``fail``: the true value is beyond the threshold, with confidence;
* ``pass``: it is within, with confidence;
* ``undecided``: the evidence does not tell yet; the gate says how many more
  samples would, if the estimate held (``needed``).

The confidence is a *sequence* (vigil.core.stats): valid at every check of
the step at once, however often it is looked at. A rollout's error budget,
``1 - analysis.confidence``, is shared equally among its judged steps
(``RolloutPolicy.judged_steps``); within a step, Holm's method over the
gates' anytime p-values decides which fail (the input-drift gate is one
family over its features, Bonferroni within), and the intervals shown are
the simultaneous ones (each gate at the step's budget divided by the
number of gates). So a candidate exactly as good as the stable is rolled
back with probability at most ``1 - confidence``, at any rate of traffic,
when the stable itself meets the absolute limits (SLOs, minAccuracy).

The gates, and the evidence each counts (a shadow step judges the copies
the candidate answered, those the stable's sidecars could not compare as
failed; a canary step its live requests):

========================  ===========================================================
``errorRate``             share of failed requests vs ``monitoring.slo.maxErrorRate``
``latencyP95``            p95 vs ``monitoring.slo.maxLatencyP95``: the share of requests
                          slower than the limit, at most 5 % (interpolated in its bucket)
``latencyVsStable``       P(a candidate request is slower than a stable one over the same
                          span), Mann-Whitney on the histograms, vs 1/2 + ``margins.latency``
``agreement``             (shadow) share of compared predictions that agree vs ``minAgreement``
``predictionShift``       candidate-vs-stable prediction divergence, corrected for sample
                          size, vs ``maxPredictionShift``
``inputDrift``            per shared feature, the candidate's drift vs the stable's
                          + ``margins.inputDrift``
``realizedPerformance``   (canary, with ``analysis.performance``) the candidate's realized
                          accuracy vs ``minAccuracy``, or its MAE vs ``maxMAE``
``performanceVsStable``   (canary) its accuracy vs the stable's x (1 - ``maxDrop``), or
                          its MAE vs the stable's x (1 + ``maxDrop``), same span
========================  ===========================================================

The performance gates count labels that arrived over the step for the
predictions each revision served live (a shadow step's copies get none).
Until ``performance.minLabels`` are in (the stable's too, for the
comparison) a gate waits: undecided, never passing, its ``needed`` the
labels missing.

The golden set (validate step) is replayed once: its exact (Clopper-Pearson)
interval is shown, and with no more evidence to come an undecided replay
is settled by its estimate, as every undecided gate is once its step's
evidence is complete (``within``).

One module per concern:

- :mod:`~vigil.core.judges.evidence`: a gate's evidence and verdict, the proportion and
  mean tests most gates are built from;
- :mod:`~vigil.core.judges.requests`: errorRate, agreement, latencyP95, latencyVsStable;
- :mod:`~vigil.core.judges.divergence`: predictionShift, inputDrift;
- :mod:`~vigil.core.judges.performance`: realizedPerformance, performanceVsStable;
- :mod:`~vigil.core.judges.verdict`: a step's gates, Holm, the samples needed; the golden set.
"""

# The package's face: what the rollout, the plugin and the tests use.
from vigil.core.judges.evidence import Explanation as Explanation
from vigil.core.judges.evidence import Gate as Gate
from vigil.core.judges.requests import P95_TAIL as P95_TAIL
from vigil.core.judges.verdict import gates as gates
from vigil.core.judges.verdict import golden_gate as golden_gate
from vigil.core.judges.verdict import not_judged as not_judged
from vigil.core.judges.verdict import step_alpha as step_alpha
