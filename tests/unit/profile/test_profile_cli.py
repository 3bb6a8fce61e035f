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


def test_build_names_a_missing_prediction_column_and_an_empty_csv(frame, tmp_path, capsys):
    src = tmp_path / "data.csv"
    frame.to_csv(src, index=False)
    argv = ["profile", "build", str(src), "--features", "a", "--prediction-column", "nope"]
    assert main(argv) == 1
    assert "prediction or label column not found: ['nope']" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("")
    assert main(["profile", "build", str(tmp_path / "empty.csv")]) == 1
    assert "empty.csv is not a readable CSV" in capsys.readouterr().err


def test_build_reads_a_csv_saved_with_a_byte_order_mark(tmp_path, capsys):
    """Excel's "CSV UTF-8" starts with a BOM: it must not become part of the first name."""
    (tmp_path / "excel.csv").write_bytes("\ufeffa,b\n1,2\n3,4\n".encode())
    assert main(["profile", "build", str(tmp_path / "excel.csv")]) == 0
    assert [f["name"] for f in json.loads(capsys.readouterr().out)["features"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "extra", "says"),
    [
        (b"a,b\n\xff\xfe,1\n", (), "data.csv is not UTF-8 text (line 2: byte 0xff)"),
        (b"a,b\n1,2\n", ("--format", "parquet"), "data.csv is not a readable Parquet file"),
        (b"a,b\n1,2\n", ("--threshold", "nan"), "--threshold must be a finite number >= 0"),
        (b"a,b\n1,2\n", ("--warning", "inf"), "--warning must be a finite number >= 0"),
        (b"a,b\n1,2\n", ("-o", "missing/p.json"), "cannot write missing/p.json"),
        (b"a,b\n1,inf\n", (), "column 'b': data row 1 holds inf"),
    ],
)
def test_build_reports_bad_input_in_one_line_without_traceback(
    tmp_path, capsys, monkeypatch, content, extra, says
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_bytes(content)
    assert main(["profile", "build", "data.csv", *extra]) == 1
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


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
    bad.write_bytes(b'{"model": "\xe9"}')
    assert main(["profile", "show", str(bad)]) == 1
    assert "bad.json is not UTF-8 text (line 1: byte 0xe9)" in capsys.readouterr().err


class TestValidationBaseline:
    """``--label-column`` records the validation score realized performance is held to."""

    @staticmethod
    def labelled(rows: int, seed: int, wrong_every: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, 3, rows)
        predicted = truth.copy()
        predicted[::wrong_every] = (predicted[::wrong_every] + 1) % 3
        return pd.DataFrame({"a": rng.normal(size=rows), "pred": predicted, "y": truth})

    def build(self, tmp_path, capsys, *extra: str) -> tuple[int, str]:
        out = tmp_path / "profile.json"
        args = ["profile", "build", str(tmp_path / "train.csv"), "--prediction-column", "pred"]
        rc = main([*args, *extra, "-o", str(out)])
        return rc, capsys.readouterr().err

    def test_a_holdout_file_gives_a_holdout_score(self, tmp_path, capsys):
        self.labelled(300, 1, 10).to_csv(tmp_path / "train.csv", index=False)
        self.labelled(200, 2, 4).to_csv(tmp_path / "holdout.csv", index=False)
        rc, err = self.build(
            tmp_path, capsys, "--label-column", "y", "--holdout", str(tmp_path / "holdout.csv")
        )
        assert rc == 0, err
        profile = load_profile(tmp_path / "profile.json")
        assert profile.feature_names == ("a",)  # the label is no feature
        validation = profile.validation
        assert validation is not None
        assert (validation.method, validation.rows, validation.accuracy) == ("holdout", 200, 0.75)
        assert "accuracy 0.75 on 200 rows, holdout" in err

    def test_without_a_holdout_the_score_says_how_it_was_made(self, tmp_path, capsys):
        self.labelled(300, 1, 10).to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, "--label-column", "y")
        assert rc == 0 and "in-sample: optimistic" in err
        assert load_profile(tmp_path / "profile.json").validation.method == "in-sample"
        rc, err = self.build(tmp_path, capsys, "--label-column", "y", "--out-of-fold")
        validation = load_profile(tmp_path / "profile.json").validation
        assert (validation.method, validation.accuracy) == ("cross-validation", 0.9)

    def test_a_regressor_gets_mae_and_rmse(self, tmp_path, capsys):
        frame = pd.DataFrame({"a": [1.0, 2, 3, 4], "pred": [1.5, 2.0, 3.0, 2.0], "y": [1, 2, 3, 4]})
        frame.to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, "--label-column", "y", "--task", "regression")
        assert rc == 0, err
        validation = load_profile(tmp_path / "profile.json").validation
        assert (validation.mae, validation.rmse) == (0.625, float(f"{(4.25 / 4) ** 0.5:.6g}"))

    def test_a_small_unit_regressor_keeps_its_mae_in_significant_digits(self, tmp_path, capsys):
        """Six decimals wrote an MAE of 2.4e-07 as 0: PerformanceDegraded was always True."""
        rng = np.random.default_rng(0)
        truth = rng.normal(2e-6, 1e-6, 500)
        predicted = truth + rng.normal(0, 3e-7, 500)
        frame = pd.DataFrame({"a": rng.normal(size=500), "pred": predicted, "y": truth})
        frame.to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, "--label-column", "y")
        assert rc == 0, err
        validation = load_profile(tmp_path / "profile.json").validation
        errors = predicted - truth
        assert validation.mae == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
        assert validation.rmse == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-5)

    def test_a_regressor_with_a_missing_prediction_is_refused_naming_the_row(
        self, tmp_path, capsys
    ):
        """A labelled row without a prediction made the MAE NaN and the JSON unwritable.

        A classifier counts such a row as a wrong answer; a regressor has no error to count,
        and skipping the row would flatter it, so the build stops and names the row.
        """
        frame = pd.DataFrame({"a": [1.0, 2, 3], "pred": [1.5, None, 3.0], "y": [1, 2, 3]})
        frame.to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, "--label-column", "y", "--task", "regression")
        assert rc == 1
        assert "column 'pred': data row 2 has a label but no prediction" in err

    def test_a_regressor_with_an_infinite_label_is_refused_naming_the_row(self, tmp_path, capsys):
        """An infinite error made the MAE infinite and the JSON unwritable (a traceback)."""
        frame = pd.DataFrame({"a": [1.0, 2, 3], "pred": [1.5, 2.0, 3.0], "y": [1, "inf", 3]})
        frame.to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, "--label-column", "y", "--task", "regression")
        assert rc == 1
        assert "column 'pred': data row 2: a prediction or label is not a finite number" in err

    def test_a_classifier_counts_a_missing_prediction_as_wrong(self, tmp_path, capsys):
        frame = pd.DataFrame({"a": [1.0, 2, 3, 4], "pred": [1, None, 0, 1], "y": [1, 1, 0, 1]})
        frame.to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, "--label-column", "y", "--task", "classification")
        assert rc == 0, err
        validation = load_profile(tmp_path / "profile.json").validation
        assert (validation.rows, validation.accuracy) == (4, 0.75)

    def test_profiles_without_it_keep_their_fingerprint(self, tmp_path, capsys):
        self.labelled(300, 1, 10).to_csv(tmp_path / "train.csv", index=False)
        self.build(tmp_path, capsys, "--features", "a")
        plain = load_profile(tmp_path / "profile.json")
        assert "validation" not in plain.content_dict()
        self.build(tmp_path, capsys, "--features", "a", "--label-column", "y")
        assert load_profile(tmp_path / "profile.json").fingerprint != plain.fingerprint

    @pytest.mark.parametrize(
        ("extra", "says"),
        [
            (("--holdout", "x.csv"), "--holdout and --out-of-fold need --label-column"),
            (("--label-column", "nope"), "label column 'nope' not found"),
            (("--label-column", "y", "--holdout", "h.csv", "--out-of-fold"), "not both"),
        ],
    )
    def test_bad_options_are_refused_with_the_reason(self, tmp_path, capsys, extra, says):
        self.labelled(50, 1, 10).to_csv(tmp_path / "train.csv", index=False)
        rc, err = self.build(tmp_path, capsys, *extra)
        assert rc == 1 and says in err


def test_a_csv_written_with_its_index_is_refused_with_the_way_out(frame, tmp_path, capsys):
    """``df.to_csv(path)`` writes the index unnamed: it became feature "Unnamed: 0" of 3,
    the model takes 2, and every request then failed the feature-count check."""
    src = tmp_path / "data.csv"
    frame.to_csv(src)
    assert main(["profile", "build", str(src), "--prediction-column", "label"]) == 1
    err = capsys.readouterr().err
    assert "'Unnamed: 0'" in err and "index=False" in err and "--features" in err
    assert len(err.strip().splitlines()) == 1
    argv = ["profile", "build", str(src), "--prediction-column", "label", "--features", "a,b"]
    assert main(argv) == 0


def test_build_says_which_features_are_numeric_and_which_categorical(tmp_path, capsys):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"], "k": [1, 2, 1]})
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "data.csv"), "--categorical", "k", "-o", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "numeric (1): a\n" in err and "categorical (2): colour, k\n" in err


def numbers_with_one_cell(tmp_path, cell: str) -> None:
    """data.csv: a column x of 40 numbers, ``cell`` in the sixth row, beside a column y."""
    values = [f"{v:.3f}" for v in np.linspace(0.0, 1.0, 40)]
    values[5] = cell
    (tmp_path / "data.csv").write_text(
        "x,y\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values))
    )


def test_a_stray_missing_marker_is_refused_then_read_as_missing_on_request(tmp_path, capsys):
    """A "?" in a column of numbers made it categorical without a word."""
    numbers_with_one_cell(tmp_path, "?")
    assert main(["profile", "build", str(tmp_path / "data.csv")]) == 1
    err = capsys.readouterr().err
    assert "column 'x'" in err and "'?' (1 row)" in err and "--missing-values" in err
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "data.csv"), "--missing-values", "?", "-o", str(out)]
    assert main(argv) == 0
    x = load_profile(out).feature("x")
    assert x.type == "numeric" and x.null_rate == pytest.approx(1 / 40)


def test_a_number_with_a_thousands_separator_is_named_so_not_offered_as_a_marker(tmp_path, capsys):
    # The message offered --missing-values '1,234', which splits at the comma: the same
    # refusal, and every cell 1 and 234 read as missing.
    numbers_with_one_cell(tmp_path, '"1,234"')
    assert main(["profile", "build", str(tmp_path / "data.csv")]) == 1
    err = capsys.readouterr().err
    assert "1 value that is not: '1,234' (1 row)" in err
    assert "thousands separator" in err and "--missing-values" not in err


def test_parquet_decimals_and_nullable_booleans_keep_their_kind(tmp_path, capsys):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    prices = [decimal.Decimal(f"{v:.2f}") for v in np.linspace(1.0, 50.0, 40)]
    flags = [None if i % 4 == 0 else i % 3 == 0 for i in range(40)]
    table = pa.table({"price": pa.array(prices, pa.decimal128(10, 2)), "flag": flags})
    pq.write_table(table, tmp_path / "data.parquet")
    out = tmp_path / "p.json"
    assert main(["profile", "build", str(tmp_path / "data.parquet"), "-o", str(out)]) == 0
    profile = load_profile(out)
    assert profile.feature("price").type == "numeric"
    assert profile.feature("flag").allowed == ("false", "true")
    assert profile.feature("flag").null_rate == pytest.approx(0.25)


def test_a_label_missing_from_a_nullable_column_is_no_labelled_row(tmp_path, capsys):
    frame = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0, 4.0],
            "pred": [True, False, False, True],
            "y": pd.array([True, None, False, True], dtype="boolean"),
        }
    )
    frame.to_parquet(tmp_path / "data.parquet")
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "data.parquet"), "-o", str(out)]
    assert main([*argv, "--prediction-column", "pred", "--label-column", "y"]) == 0
    validation = load_profile(out).validation
    assert (validation.rows, validation.accuracy) == (3, 1.0)


def test_a_range_float32_cannot_tell_apart_is_warned_about_on_stderr(tmp_path, capsys):
    narrow = 1e6 + np.random.default_rng(0).random(200) * 0.01
    pd.DataFrame({"narrow": narrow}).to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "p.json"
    assert main(["profile", "build", str(tmp_path / "data.csv"), "-o", str(out)]) == 0
    assert "warning: column 'narrow'" in capsys.readouterr().err


def test_missing_values_apply_to_csv_not_to_parquet(frame, tmp_path, capsys):
    frame.to_parquet(tmp_path / "data.parquet")
    assert main(["profile", "build", str(tmp_path / "data.parquet"), "--missing-values", "?"]) == 1
    assert "--missing-values applies to CSV files" in capsys.readouterr().err


def test_a_csv_header_with_spaces_after_the_commas_names_the_columns_without_them(tmp_path, capsys):
    """A header "age, income" gave the feature ' income'; a cell ", Paris" the category ' Paris'."""
    (tmp_path / "data.csv").write_text(
        "age, income, city, zip\n30, 1000, Paris, 02134\n40, 2000, Rome, 10001\n"
    )
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "data.csv"), "--categorical", "zip"]
    assert main([*argv, "-o", str(out)]) == 0, capsys.readouterr().err
    profile = load_profile(out)
    assert profile.feature_names == ("age", "income", "city", "zip")
    assert profile.feature("city").allowed == ("Paris", "Rome")
    assert profile.feature("zip").allowed == ("02134", "10001")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            ("--features", "a,b,p", "--prediction-column", "p"),
            "--features names 'p', the --prediction-column",
        ),
        (
            ("--features", "a,b,y", "--prediction-column", "p", "--label-column", "y"),
            "--features names 'y', the --label-column",
        ),
        (("--features", "a,a,b"), "--features names 'a' twice"),
    ],
)
def test_options_naming_a_column_twice_are_refused_in_one_line(tmp_path, capsys, options, says):
    """Each gave a traceback: 'DataFrame' object has no attribute 'dtype'."""
    (tmp_path / "data.csv").write_text("a,b,p,y\n1,2,0,0\n3,4,1,1\n5,6,1,0\n")
    assert main(["profile", "build", str(tmp_path / "data.csv"), *options]) == 1
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_a_parquet_file_with_a_column_name_twice_is_refused_naming_it(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array([1.0, 2.0])] * 3, names=["a", "a", "b"])
    pq.write_table(table, tmp_path / "data.parquet")
    assert main(["profile", "build", str(tmp_path / "data.parquet")]) == 1
    err = capsys.readouterr().err
    assert "column 'a' appears twice in" in err and len(err.strip().splitlines()) == 1


def test_a_csv_header_with_a_column_name_twice_is_refused_naming_it(tmp_path, capsys):
    """pandas read the second 'a' as 'a.1': a feature no client sends."""
    (tmp_path / "data.csv").write_text("a,a,b\n1,2,3\n4,5,6\n")
    assert main(["profile", "build", str(tmp_path / "data.csv")]) == 1
    err = capsys.readouterr().err
    assert "column 'a' appears twice in" in err and len(err.strip().splitlines()) == 1


def test_blank_csv_header_cells_are_not_a_name_twice(tmp_path, capsys):
    (tmp_path / "data.csv").write_text(",a,,b\n0,1,x,3\n1,4,y,6\n")
    assert main(["profile", "build", str(tmp_path / "data.csv"), "--features", "a,b"]) == 0


def test_the_same_column_as_prediction_and_label_is_refused_naming_both_options(tmp_path, capsys):
    """It said "prediction column 'p' not found": the label option had taken it away."""
    (tmp_path / "data.csv").write_text("a,p\n1,0\n3,1\n")
    argv = ["profile", "build", str(tmp_path / "data.csv")]
    assert main([*argv, "--prediction-column", "p", "--label-column", "p"]) == 1
    err = capsys.readouterr().err
    assert "--prediction-column and --label-column both name 'p'" in err


def test_a_profile_the_sidecar_would_reject_is_not_written(tmp_path, capsys, monkeypatch):
    """A column named "" gave a profile the sidecar and the operator reject; exit code 0."""
    from dataclasses import replace

    import vigil.profile.cli as cli

    pd.DataFrame({"": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "e.parquet")
    out = tmp_path / "p.json"
    assert main(["profile", "build", str(tmp_path / "e.parquet"), "-o", str(out)]) == 1
    assert "feature 0 has an empty name" in capsys.readouterr().err and not out.exists()

    # Whatever else the build lets through, the text is read back as the sidecar reads it.
    def unnamed(*args, **kwargs):
        profile = build(*args, **kwargs)
        return replace(profile, features=(replace(profile.features[0], name=""),))

    build = cli.build_profile
    monkeypatch.setattr(cli, "build_profile", unnamed)
    pd.DataFrame({"b": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "ok.csv", index=False)
    assert main(["profile", "build", str(tmp_path / "ok.csv"), "-o", str(out)]) == 1
    assert "invalid reference profile" in capsys.readouterr().err and not out.exists()


def test_a_parquet_column_of_numbers_and_a_word_gets_advice_that_works_for_parquet(
    tmp_path, capsys
):
    """The error said --missing-values, which Parquet refuses: the advice led nowhere."""
    amounts = ["1.5", "2", "3.25", "?"] * 10
    pd.DataFrame({"amt": amounts}).to_parquet(tmp_path / "data.parquet")
    assert main(["profile", "build", str(tmp_path / "data.parquet")]) == 1
    err = capsys.readouterr().err
    assert "column 'amt'" in err and "Parquet" in err and "to_numeric" in err
    # Following it: the column rewritten as numbers with nulls builds as numeric.
    numbers = pd.to_numeric(pd.Series(amounts), errors="coerce")
    pd.DataFrame({"amt": numbers}).to_parquet(tmp_path / "fixed.parquet")
    out = tmp_path / "p.json"
    assert main(["profile", "build", str(tmp_path / "fixed.parquet"), "-o", str(out)]) == 0
    assert load_profile(out).feature("amt").null_rate == pytest.approx(0.25)


def test_show_and_help_say_the_profiles_drift_settings_are_not_judged_with(frame, tmp_path, capsys):
    """--method/--threshold were shown as the profile's drift settings; the operator
    judges with spec.monitoring.drift only."""
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "data.csv"), "--method", "jsd", "-o", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["profile", "show", str(out)]) == 0
    drift = next(line for line in capsys.readouterr().out.splitlines() if "drift" in line)
    assert "jsd" in drift and "spec.monitoring.drift" in drift
    with pytest.raises(SystemExit):
        main(["profile", "build", "--help"])
    assert "spec.monitoring.drift" in " ".join(capsys.readouterr().out.split())
