"""Both metrics sources read the stable's shadow copies by target revision and outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from vigil.core.window import RevisionWindow
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.prometheus import _group, family_query

BASE = ["model", "version", "revision", "role"]
OUTCOMES = {"compared": 90, "timeout": 4, "unparseable": 3, "target_error": 2, "unreachable": 1}


def test_a_scrape_keeps_the_copies_not_compared_per_target_revision() -> None:
    registry = CollectorRegistry()
    sent = Counter(
        "vigil_shadow_requests", "", [*BASE, "target_revision", "outcome"], registry=registry
    )
    for outcome, n in OUTCOMES.items():
        sent.labels("wine", "1", "r1", "stable", "cand", outcome).inc(n)
    sent.labels("wine", "1", "r1", "stable", "old", "mismatch").inc(7)
    dropped = Counter("vigil_shadow_dropped", "", [*BASE, "target_revision"], registry=registry)
    dropped.labels("wine", "1", "r1", "stable", "cand").inc(11)
    values, _ = parse_sidecar_metrics(generate_latest(registry).decode())
    window = RevisionWindow.from_series(values, pods=1)
    assert window.shadow_not_compared == {
        "cand": {"timeout": 4.0, "unparseable": 3.0, "unreachable": 1.0, "dropped": 11.0},
        "old": {"mismatch": 7.0},
    }


def test_prometheus_groups_the_copies_by_target_revision_and_outcome() -> None:
    family = "vigil_shadow_requests_total"
    assert family_query(family, 60) == (
        "sum by (namespace, model_deployment, revision, target_revision, outcome) "
        "(increase(vigil_shadow_requests_total{}[60s]))"
    )
    group = {"namespace": "ns", "model_deployment": "wine", "revision": "r1"}
    answer = [
        {"metric": {**group, "target_revision": "cand", "outcome": outcome}, "value": [0, str(n)]}
        for outcome, n in OUTCOMES.items()
    ]
    pods = [{"metric": group, "value": [0, "2"]}]
    series, _ = _group([family], [answer], pods)
    window = RevisionWindow.from_series(series[("ns", "wine", "r1")], pods=2)
    assert window.shadow_not_compared == {
        "cand": {"timeout": 4.0, "unparseable": 3.0, "unreachable": 1.0}
    }
