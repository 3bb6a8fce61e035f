"""`vigil profile build` and `vigil profile show` from CSV and Parquet files."""

import json

import numpy as np
import pandas as pd
import pytest

from vigil.cli import main
from vigil.profile import load_profile


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"a": rng.normal(size=200), "b": rng.uniform(size=200), "label": rng.integers(0, 2, 200)}
    )


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_build_writes_a_valid_profile(frame, tmp_path, suffix):
    src = tmp_path / f"data.{suffix}"
    getattr(frame, f"to_{suffix}")(src, index=False)
    out = tmp_path / "profile.json"
    rc = main(
        [
            "profile",
            "build",
            str(src),
            "--prediction-column",
            "label",
            "--model-name",
            "m",
            "--model-version",
            "1",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    profile = load_profile(out)
    assert profile.feature_names == ("a", "b")
    assert profile.task == "classification" and profile.row_count == 200


def test_build_shows_progress_on_request(frame, tmp_path, capsys):
    src = tmp_path / "data.csv"
    frame.to_csv(src, index=False)
    assert main(["profile", "build", str(src), "--progress", "always"]) == 0
    captured = capsys.readouterr()
    assert "100.0%" in captured.err and "200 rows" in captured.err
    assert json.loads(captured.out)["rowCount"] == 200


def test_build_selects_features_in_the_given_order(frame, tmp_path, capsys):
    src = tmp_path / "data.csv"
    frame.to_csv(src, index=False)
    assert main(["profile", "build", str(src), "--features", "b,a"]) == 0
    assert [f["name"] for f in json.loads(capsys.readouterr().out)["features"]] == ["b", "a"]


def test_build_reports_missing_input_without_traceback(tmp_path, capsys):
    assert main(["profile", "build", str(tmp_path / "nope.csv")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_show_prints_a_table(frame, tmp_path, capsys):
    src = tmp_path / "data.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "p.json"
    main(["profile", "build", str(src), "--prediction-column", "label", "-o", str(out)])
    capsys.readouterr()
    assert main(["profile", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sha256:" in text and "classification" in text
    assert "prediction" in text and "numeric" in text


def test_show_rejects_invalid_profile(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["profile", "show", str(bad)]) == 1
    assert "JSON object" in capsys.readouterr().err
