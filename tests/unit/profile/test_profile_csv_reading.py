"""`vigil profile build` reads a CSV as one file: each column typed once, commas only."""

import pytest

from vigil.cli import main
from vigil.profile import cli, load_profile


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 10 rows: what a file of a few hundred thousand rows is read in."""
    monkeypatch.setattr(cli, "CSV_CHUNK_ROWS", 10)


def _build(tmp_path, *options):
    out = tmp_path / "p.json"
    rc = main(["profile", "build", str(tmp_path / "data.csv"), "-o", str(out), *options])
    return rc, out


def test_a_categorical_column_is_keyed_alike_in_chunks_with_and_without_words(
    tmp_path, small_chunks, capsys
):
    """A word in one chunk made its "1.0" the text "1.0", the number 1 ("1") elsewhere."""
    grades = ["1.0", "2.0"] * 15
    grades[25] = "unknown"
    flags = ["True", "False", ""] * 10
    rows = "".join(f"{i},{g},{f}\n" for i, (g, f) in enumerate(zip(grades, flags, strict=True)))
    (tmp_path / "data.csv").write_text("x,grade,flag\n" + rows)
    rc, out = _build(tmp_path, "--categorical", "grade,flag")
    assert rc == 0, capsys.readouterr().err
    profile = load_profile(out)
    assert profile.feature("grade").allowed == ("1", "2", "unknown")
    assert profile.feature("flag").allowed == ("false", "true")


def test_a_text_column_with_words_in_some_chunks_only_reads_as_in_one_chunk(
    tmp_path, monkeypatch, capsys
):
    colours = ["2.0", "3.0"] * 10 + ["red", "blue", "2.0", "green"] * 10
    # Booleans, with a chunk where a missing cell makes them objects and one all empty.
    flags = ["True", "False"] * 5 + ["True", ""] * 5 + [""] * 10 + ["False"] * 30
    rows = "".join(f"{i},{c},{f}\n" for i, (c, f) in enumerate(zip(colours, flags, strict=True)))
    (tmp_path / "data.csv").write_text("x,colour,flag\n" + rows)
    assert _build(tmp_path)[0] == 0
    whole = load_profile(tmp_path / "p.json")
    monkeypatch.setattr(cli, "CSV_CHUNK_ROWS", 10)
    assert _build(tmp_path)[0] == 0
    chunked = load_profile(tmp_path / "p.json")
    assert chunked.feature("colour").allowed == ("2.0", "3.0", "blue", "green", "red")
    assert chunked.feature("flag").allowed == ("false", "true")
    assert chunked.features == whole.features


def test_a_column_of_booleans_in_some_chunks_and_numbers_in_others_reads_as_in_one_chunk(
    tmp_path, monkeypatch
):
    flags = ["True", "False"] * 10 + ["1", "0"] * 10
    rows = "".join(f"{i},{i % 7},{f}\n" for i, f in enumerate(flags))
    (tmp_path / "data.csv").write_text("x,y,flag\n" + rows)
    assert _build(tmp_path)[0] == 0
    whole = load_profile(tmp_path / "p.json")
    monkeypatch.setattr(cli, "CSV_CHUNK_ROWS", 10)
    assert _build(tmp_path)[0] == 0
    assert load_profile(tmp_path / "p.json").features == whole.features


@pytest.mark.parametrize(("separator", "said"), [(";", "';'"), ("\t", "a tab")])
def test_a_file_separated_otherwise_than_by_commas_is_refused_saying_so(
    tmp_path, capsys, separator, said
):
    header = separator.join(["a", "b", "c"])
    rows = "".join(separator.join([str(i), f"{i * 2.5}", str(i % 3)]) + "\n" for i in range(30))
    (tmp_path / "data.csv").write_text(f"{header}\n{rows}")
    rc, out = _build(tmp_path)
    assert rc == 1 and not out.exists()
    err = capsys.readouterr().err
    assert f"its header {header!r} is one column holding {said}" in err
    assert "the file must be comma-separated" in err


def test_a_column_without_values_is_refused_saying_what_to_do(tmp_path, capsys):
    (tmp_path / "data.csv").write_text("a,b\n" + "".join(f"{i},\n" for i in range(10)))
    assert _build(tmp_path)[0] == 1
    assert capsys.readouterr().err == (
        "vigil profile build: column 'b' has no values (all missing): leave it out of the"
        " features (vigil profile build --features), or fill it\n"
    )
    assert _build(tmp_path, "--features", "a")[0] == 0


def test_text_cells_pandas_would_make_missing_are_categories_as_the_sidecar_reads_them(
    tmp_path, capsys
):
    """A text "NA" (North America), "None" (no discount): missing, the profile's reference had them
    at no share while live traffic sent them all day (31 % of rows out of the allowed set)."""
    regions, discounts = ["EU", "NA", "APAC"] * 10, ["None", "Coupon", ""] * 10
    rows = "".join(
        f"{i},{r},{d}\n" for i, (r, d) in enumerate(zip(regions, discounts, strict=True))
    )
    (tmp_path / "data.csv").write_text("x,region,discount\n" + rows)
    rc, out = _build(tmp_path)
    assert rc == 0
    region, discount = load_profile(out).feature("region"), load_profile(out).feature("discount")
    assert region.allowed == ("APAC", "EU", "NA") and region.null_rate == 0
    assert discount.allowed == ("Coupon", "None") and discount.null_rate == pytest.approx(1 / 3)
    err = capsys.readouterr().err
    assert "column 'region' holds text" in err and "10 'NA'" in err
    assert "--missing-values None" in err
    # Said to be missing: missing.
    rc, out = _build(tmp_path, "--missing-values", "None")
    assert rc == 0 and load_profile(out).feature("discount").null_rate == pytest.approx(2 / 3)


def test_a_column_of_numbers_keeps_pandas_missing_markers_missing(tmp_path, capsys):
    values = [str(v) for v in range(30)]
    values[3], values[7] = "NA", "None"
    (tmp_path / "data.csv").write_text("x\n" + "".join(f"{v}\n" for v in values))
    rc, out = _build(tmp_path)
    x = load_profile(out).feature("x")
    assert rc == 0 and x.type == "numeric" and x.null_rate == pytest.approx(2 / 30)


@pytest.mark.parametrize(
    "name, content, kind",
    [
        ("rows.jsonl", b'{"a": 0.84, "b": "y"}\n{"a": 0.1, "b": "n"}\n', "JSON lines"),
        ("rows.json", b'[{"a": 0.84, "b": "y"}]', "JSON"),
        ("rows.csv.gz", b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
        ("rows.csv", b"PK\x03\x04rest", "a zip archive"),
    ],
)
def test_a_file_of_another_kind_is_refused_saying_what_it_is(tmp_path, capsys, name, content, kind):
    # JSON lines read as CSV made a feature of each '{"a": 0.84' (exit 0).
    (tmp_path / name).write_bytes(content)
    assert main(["profile", "build", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert f"is {kind}" in err and "df.to_csv(path, index=False)" in err


def test_numbers_with_a_stray_word_keep_their_missing_markers_and_the_word_is_named(
    tmp_path, capsys
):
    # Read as written, 55 % "NA" made the column words: categorical, the word never said.
    cells = ["NA" if i % 20 < 11 else str(1000 + i) for i in range(200)]
    cells[3] = "unknown"
    (tmp_path / "data.csv").write_text("income\n" + "".join(f"{c}\n" for c in cells))
    rc, _ = _build(tmp_path)
    err = capsys.readouterr().err
    assert rc == 1 and "holds numbers and 1 value that is not: 'unknown'" in err


def test_an_na_label_is_no_label(tmp_path, capsys):
    # Read as written, 40 "NA" labels were scored as wrong answers: accuracy 0.6, a
    # baseline real drops never fell below.
    rows = [("cat", "cat")] * 60 + [("dog", "NA")] * 40
    text = "x,pred,label\n" + "".join(f"{i},{p},{t}\n" for i, (p, t) in enumerate(rows))
    (tmp_path / "data.csv").write_text(text)
    rc, out = _build(tmp_path, "--prediction-column", "pred", "--label-column", "label")
    assert rc == 0
    validation = load_profile(out).validation
    assert validation is not None and (validation.rows, validation.accuracy) == (60, 1.0)


def test_a_column_half_words_is_read_as_written_as_it_is_profiled_categorical(tmp_path, capsys):
    # Profiled categorical at half words, its "NA" had been made missing without a word.
    cells = ["EU", "3"] * 5 + ["NA", "NA"]
    (tmp_path / "data.csv").write_text("region\n" + "".join(f"{c}\n" for c in cells))
    rc, out = _build(tmp_path)
    region = load_profile(out).feature("region")
    assert rc == 0 and region.type == "categorical" and region.null_rate == 0
    assert "2 'NA'" in capsys.readouterr().err
