"""How a shadow copy is compared when the stable has no reference profile.

The operator may say the task in the shadow settings (``shadow.task``); without it, and
without a profile, the comparison reads the answers: ``[N, C]`` scores by their arg-max,
and numbers as numbers wherever the settings give an absolute tolerance.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sidecar_testkit import SHADOW_LABELS, SHADOW_ROWS, stable_shadow, until, v2_body

from vigil.sidecar.config import ConfigError, settings_from_mapping
from vigil.sidecar.payload import ArgMaxes
from vigil.sidecar.shadow import Shadow, ShadowCopy, compare_predictions, guess_classification

LABELS = {**SHADOW_LABELS, "target_revision": "c"}


def _answer(values: list[Any], shape: list[int] | None = None) -> bytes:
    tensor = {"name": "p", "shape": shape or [len(values)], "datatype": "FP64", "data": values}
    return json.dumps({"outputs": [tensor]}).encode()


def _shadow(target: str, registry: CollectorRegistry, **settings: Any) -> Shadow:
    """A stable's copier with no reference profile (``classification`` None)."""
    return stable_shadow(target, registry, classification=None, **settings)


async def _agreements(shadow: Shadow, registry: CollectorRegistry, local: bytes) -> float | None:
    body = v2_body(SHADOW_ROWS)
    copy = ShadowCopy(
        "POST", "/v2/models/m/infer", "application/json", body, local, "application/json"
    )
    shadow.start()
    try:
        shadow.submit(copy)
        await until(lambda: not shadow.pending)
    finally:
        await shadow.stop()
    assert registry.get_sample_value("vigil_shadow_predictions_total", LABELS) == 3
    return registry.get_sample_value("vigil_shadow_agreements_total", LABELS)


async def _agreed(answering: Any, local: bytes, remote: bytes, **settings: Any) -> float | None:
    """Rows a stable without a reference profile finds agreeing: its answer ``local``, the
    target's ``remote``."""
    target = await answering(remote)
    registry = CollectorRegistry()
    return await _agreements(_shadow(target, registry, **settings), registry, local)


async def test_the_task_in_the_settings_compares_a_classifiers_scores_by_decisions(answering):
    # P(class 1) per row, retrained: every decision the same, every score moved.
    local, remote = _answer([0.9, 0.2, 0.6]), _answer([0.7, 0.4, 0.51])
    assert await _agreed(answering, local, remote, task="classification") == 3


async def test_without_a_task_the_same_scores_are_numbers(answering):
    # No word on the task: non-whole numbers are a regression's (the settings' task helps).
    assert await _agreed(answering, _answer([0.9, 0.2, 0.6]), _answer([0.7, 0.4, 0.51])) == 0


async def test_without_a_task_n_by_c_scores_are_compared_by_their_arg_max(answering):
    # Arg-maxes 1, 0, 2 on both sides; the first columns differ by far more than 5 %.
    local = _answer([0.1, 0.7, 0.2, 0.6, 0.3, 0.1, 0.2, 0.2, 0.6], [3, 3])
    remote = _answer([0.3, 0.5, 0.2, 0.4, 0.3, 0.3, 0.05, 0.15, 0.8], [3, 3])
    assert await _agreed(answering, local, remote) == 3


async def test_without_a_task_whole_numbers_meet_the_absolute_tolerance(answering):
    # A count regressor: whole numbers, each within the spec's tolerance.absolute 2.5.
    local, remote = _answer([100, 250, 37]), _answer([101, 249, 38])
    assert await _agreed(answering, local, remote, tolerance=2.5) == 3


async def test_without_a_task_or_tolerance_whole_numbers_stay_class_labels(answering):
    assert await _agreed(answering, _answer([0, 1, 2]), _answer([0, 1, 3])) == 2


async def test_the_settings_task_wins_over_the_profiles(answering):
    # A profile said classification; the operator's word (regression) compares numbers.
    target = await answering(_answer([101, 249, 38]))
    registry = CollectorRegistry()
    shadow = _shadow(target, registry, task="regression", tolerance=2.5)
    shadow.classification = True
    assert await _agreements(shadow, registry, _answer([100, 250, 37])) == 3


@pytest.mark.parametrize(
    "values, tolerance_given, expected",
    [
        (ArgMaxes([1, 0], 3), True, True),
        ([0, 1, 2], False, True),
        ([0, 1, 2], True, False),
        (["cat", "dog"], True, True),
        ([True, False], True, True),
        ([0.25, 1.0], False, False),
        ([10**400], False, True),  # no float() of a huge whole number
    ],
)
def test_guess_classification(values: list[Any], tolerance_given: bool, expected: bool):
    assert guess_classification(values, tolerance_given) is expected


def test_shadow_task_is_a_setting_of_two_values():
    doc = {"shadow": {"target": "http://c:80", "percent": 10, "task": "regression"}}
    assert settings_from_mapping(doc).shadow.task == "regression"
    with pytest.raises(ConfigError, match=r"shadow\.task"):
        settings_from_mapping({"shadow": {**doc["shadow"], "task": "ranking"}})


# ---------------------------------------------------------------- one class rule


@pytest.mark.parametrize(
    "stable, candidate",
    [([True, False, True], [1, 0, 1]), (["true", "False"], [1.0, 0]), ([1, 0], ["1", "0"])],
)
def test_a_booleans_forms_are_one_class_as_in_the_golden_replay(stable, candidate):
    # A replacement answering INT64 0/1 where the stable answered BOOL decides the same.
    from vigil.validation.golden import GoldenSet, compare

    agree, _ = compare_predictions(stable, candidate, True, 0.0, 0.05)
    golden = GoldenSet(inputs=tuple((1,) for _ in stable), expected=tuple(stable))
    assert agree == len(stable) == compare(golden, candidate)[0]


def test_other_classes_stay_apart():
    assert compare_predictions([2, "cat", 1], [True, "Cat", 2], True, 0.0, 0.05)[0] == 0
