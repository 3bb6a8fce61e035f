"""`vigil profile build`: zip codes stay text; a profile too large for kubectl is said so."""

import json
import warnings

import pandas as pd
import pytest

from vigil.cli import main
from vigil.profile import ProfileError, ProfileWarning, build_profile, load_profile
from vigil.profile.model import APPLY_ANNOTATION_BYTES, CONFIGMAP_BYTES, check_size


def _build(tmp_path, *options):
    out = tmp_path / "p.json"
    rc = main(["profile", "build", str(tmp_path / "data.csv"), "-o", str(out), *options])
    return rc, out


def test_a_categorical_csv_column_of_zip_codes_keeps_its_leading_zeros(tmp_path, capsys):
    """pandas reads "02134" as 2134: keyed "2134" while clients send "02134"."""
    (tmp_path / "data.csv").write_text(
        "zip,x\n" + "".join(f"{z},{i}\n" for i, z in enumerate(["02134", "10001", ""] * 5))
    )
    rc, out = _build(tmp_path, "--categorical", "zip")
    assert rc == 0
    zip_code = load_profile(out).feature("zip")
    assert zip_code.allowed == ("02134", "10001") and zip_code.null_rate == pytest.approx(1 / 3)
    assert "read as text (numbers written with leading zeros" in capsys.readouterr().err


def test_categorical_csv_numbers_without_leading_zeros_read_as_before(tmp_path, capsys):
    """ "1.0" stays the number 1 (keyed "1", as a client's 1 or 1.0); undeclared, a zip
    code column stays numeric."""
    rows = [("1.0", "02134"), ("2.0", "10001"), ("", "02134")] * 5
    (tmp_path / "data.csv").write_text("code,zip\n" + "".join(f"{c},{z}\n" for c, z in rows))
    rc, out = _build(tmp_path, "--categorical", "code")
    assert rc == 0
    profile = load_profile(out)
    assert profile.feature("code").allowed == ("1", "2")
    assert profile.feature("zip").type == "numeric"
    assert "read as text" not in capsys.readouterr().err


@pytest.mark.parametrize("named", ["pred", "label"])
def test_class_codes_with_leading_zeros_stay_as_written_in_the_prediction_and_label(
    tmp_path, named
):
    """A classifier trained on codes "01".."03" answers "01": read as the numbers 1..3, the
    reference's classes never matched a prediction. Either column named reads both."""
    codes = ["01", "02", "03", "02"] * 10
    rows = "".join(f"{i},{c},{c if i % 4 else '03'}\n" for i, c in enumerate(codes))
    (tmp_path / "data.csv").write_text("x,pred,label\n" + rows)
    (tmp_path / "holdout.csv").write_text("x,pred,label\n" + rows)
    columns = ("--prediction-column", "pred", "--label-column", "label")
    rc, out = _build(tmp_path, *columns, "--categorical", named)
    assert rc == 0
    profile = load_profile(out)
    assert profile.prediction is not None and profile.prediction.allowed == ("01", "02", "03")
    assert profile.feature("x").type == "numeric"
    assert profile.validation is not None and profile.validation.accuracy == pytest.approx(0.75)
    holdout = ("--holdout", str(tmp_path / "holdout.csv"))
    rc, out = _build(tmp_path, *columns, *holdout, "--categorical", named)
    assert rc == 0 and load_profile(out).validation.accuracy == pytest.approx(0.75)


def test_a_prediction_column_named_categorical_is_a_classifiers(tmp_path, capsys):
    """61 whole-number classes read as a regression (over 50 distinct numbers)."""
    rows = "".join(f"{i},{i % 61}\n" for i in range(300))
    (tmp_path / "data.csv").write_text("x,pred\n" + rows)
    rc, out = _build(tmp_path, "--prediction-column", "pred", "--categorical", "pred")
    assert rc == 0 and load_profile(out).task == "classification"
    assert "task: classification (--categorical names the prediction or label" in (
        capsys.readouterr().err
    )


def _wide_categories(rows: int, width: int) -> pd.DataFrame:
    return pd.DataFrame({"city": [f"c{i:0{width}d}" for i in range(rows)], "x": range(rows)})


def test_a_profile_kubectl_apply_cannot_store_is_warned_about(tmp_path, capsys):
    """Over 256 KiB the last-applied-configuration annotation refuses it (client-side)."""
    _wide_categories(1000, 300).to_csv(tmp_path / "data.csv", index=False)
    rc, out = _build(tmp_path, "--categorical", "city")
    err = capsys.readouterr().err
    assert rc == 0 and out.stat().st_size > APPLY_ANNOTATION_BYTES
    assert "warning: the profile is" in err and "kubectl apply --server-side" in err
    assert "'city' (" in err and "1000 allowed values" in err


def test_a_profile_no_configmap_holds_is_refused(tmp_path, capsys):
    _wide_categories(1000, 1100).to_csv(tmp_path / "data.csv", index=False)
    rc, out = _build(tmp_path, "--categorical", "city")
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "more than a ConfigMap holds (1 MiB)" in err and "'city' (" in err
    rc = main(["profile", "build", str(tmp_path / "data.csv"), "--categorical", "city"])
    assert rc == 1 and capsys.readouterr().out == ""  # not to stdout either


def test_check_size_measures_the_json_as_the_annotation_escapes_it():
    """Quotes and newlines are escaped in the annotation: a profile just under 256 KiB of
    JSON can be over it there."""
    profile = build_profile(_wide_categories(820, 300), categorical=["city"])
    text = profile.to_json()
    assert len(text.encode()) < APPLY_ANNOTATION_BYTES < len(json.dumps(text).encode())
    with pytest.warns(ProfileWarning, match="last-applied-configuration"):
        check_size(profile, text)
    small = build_profile(_wide_categories(10, 3), categorical=["city"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_size(small, small.to_json())
    with pytest.raises(ProfileError, match="1 MiB"):
        check_size(small, "x" * (CONFIGMAP_BYTES + 1))
