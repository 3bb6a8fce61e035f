"""The task a profile gets: inferred from the prediction column, and said with its reason."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vigil.cli import main
from vigil.profile import build_profile, load_profile
from vigil.profile.build import MAX_CLASSES_GUESS, infer_task


@pytest.mark.parametrize(
    ("values", "task", "why"),
    [
        (np.array(["cat", "dog", "cat"]), "classification", "non-numeric"),
        (np.array([True, False, True]), "classification", "boolean"),
        (np.array([0, 1, 2, 1, 0]), "classification", "3 distinct whole numbers"),
        (np.array([0.0, 1.0, 2.0]), "classification", "3 distinct whole numbers"),
        (np.array([0.5, 1.25, 3.0]), "regression", "fractional part (e.g. 0.5)"),
        (
            np.arange(25, 347),
            "regression",
            f"322 distinct whole numbers (more than {MAX_CLASSES_GUESS}",
        ),
        (np.array([np.nan, np.nan]), "regression", "all missing"),
    ],
)
def test_infer_task_names_the_task_and_why(values, task, why):
    got, reason = infer_task(values)
    assert got == task
    assert why in reason


def test_whole_number_target_with_many_values_builds_a_regression_profile():
    """sklearn's diabetes target: whole numbers 25..346, 214 distinct values, int dtype.

    Read from the files sklearn ships, without importing sklearn (4 s of the unit suite).
    """
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations, "scikit-learn is not installed"
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    X = np.loadtxt(data / "diabetes_data_raw.csv.gz")
    y = np.loadtxt(data / "diabetes_target.csv.gz")
    profile = build_profile(X, predictions=y.astype(np.int64))
    assert profile.task == "regression"
    assert profile.prediction is not None and profile.prediction.type == "numeric"


def test_few_whole_numbers_stay_classes_and_task_overrides_inference():
    x = np.random.default_rng(0).normal(size=(100, 2))
    labels = np.arange(100) % 3
    assert build_profile(x, predictions=labels).task == "classification"
    assert build_profile(x, predictions=labels, task="regression").task == "regression"


def _cli_build(tmp_path, frame, *extra):
    src = tmp_path / "data.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "profile.json"
    assert main(["profile", "build", str(src), "-o", str(out), *extra]) == 0
    return load_profile(out)


def test_build_prints_the_inferred_task_and_why(tmp_path, capsys):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=300), "target": rng.integers(25, 347, 300)})
    profile = _cli_build(tmp_path, frame, "--prediction-column", "target")
    err = capsys.readouterr().err
    assert profile.task == "regression"
    assert "task: regression (inferred from column 'target': " in err
    assert "distinct whole numbers (more than 50" in err and "--task classification" in err


def test_build_says_when_the_task_is_given_or_defaulted(tmp_path, capsys):
    frame = pd.DataFrame({"a": np.arange(60.0), "label": np.arange(60) % 2})
    _cli_build(tmp_path, frame, "--prediction-column", "label", "--task", "regression")
    assert "task: regression (given by --task)" in capsys.readouterr().err
    _cli_build(tmp_path, frame)
    err = capsys.readouterr().err
    assert "task: regression (the default without --prediction-column" in err
    _cli_build(tmp_path, frame, "--prediction-column", "label")
    assert "task: classification (inferred from column 'label': 2 distinct" in (
        capsys.readouterr().err
    )
