"""The JSON format round-trips, is validated, and carries a stable fingerprint."""

import datetime as dt
import json

import numpy as np
import pytest

from vigil.profile import (
    FORMAT,
    SCHEMA_VERSION,
    ProfileError,
    build_profile,
    category_key,
    load_profile,
    parse_profile,
)


@pytest.fixture
def profile():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    return build_profile(
        x,
        predictions=(x[:, 0] > 0).astype(int),
        feature_names=["a", "b", "c"],
        model_name="wine",
        model_version="3",
    )


def test_round_trip_keeps_everything(profile, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(profile.to_json())
    loaded = load_profile(path)
    assert loaded == profile
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["schemaVersion"] == SCHEMA_VERSION
    assert doc["model"] == {"name": "wine", "version": "3"}
    assert doc["fingerprint"] == profile.fingerprint


def test_a_profile_saved_with_a_byte_order_mark_reads_as_without(profile, tmp_path):
    # Saved by Notepad or PowerShell: refused, and the sidecar turned drift monitoring off.
    path = tmp_path / "p.json"
    path.write_bytes(b"\xef\xbb\xbf" + profile.to_json().encode())
    assert load_profile(path) == profile
    assert parse_profile("\ufeff" + profile.to_json()) == profile


def test_fingerprint_ignores_creation_time_but_not_content(profile):
    later = build_profile(np.zeros((2, 1)), created_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    same_data_later = parse_profile({**profile.to_dict(), "createdAt": "2031-01-01T00:00:00Z"})
    assert same_data_later.fingerprint == profile.fingerprint
    assert later.fingerprint != profile.fingerprint
    assert profile.with_model("wine", "4").fingerprint != profile.fingerprint
    assert profile.fingerprint.startswith("sha256:") and len(profile.fingerprint) == 71


def test_hand_edited_profile_fails_fingerprint_check(profile):
    doc = profile.to_dict()
    doc["drift"]["threshold"] = 0.5
    with pytest.raises(ProfileError, match="fingerprint"):
        parse_profile(json.dumps(doc))
    assert parse_profile(json.dumps(doc), verify=False).drift.threshold == 0.5
    del doc["fingerprint"]
    assert parse_profile(json.dumps(doc)).drift.threshold == 0.5


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schemaVersion=99), "schemaVersion"),
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(task="ranking"), "task"),
        (lambda d: d["features"][0]["bins"].update(edges=[1.0]), "edges"),
        (lambda d: d["features"][0]["bins"].update(edges=[3.0, 2.0, 1.0]), "edges"),
        (lambda d: d["features"][0]["bins"]["proportions"].append(0.0), "proportions"),
        (lambda d: d["features"][0]["bins"]["proportions"].__setitem__(1, 0.9), "sums"),
        (lambda d: d["features"][1].update(name=""), "name"),
        (lambda d: d["features"][1].update(name="a"), "duplicate"),
        (lambda d: d.update(features={}), "features"),
        # Objects of another type: a ProfileError naming the field, never an AttributeError
        # (the health loop reads a bad profile as its model's problem, not a crash).
        (lambda d: d.update(drift="psi"), "drift must be an object"),
        (lambda d: d.update(drift=[1]), "drift must be an object"),
        (lambda d: d["features"][0].update(stats=[1]), r"features\[0\]\.stats must be an object"),
    ],
)
def test_invalid_profiles_are_rejected_with_a_reason(profile, mutate, message):
    doc = profile.to_dict()
    del doc["fingerprint"]
    mutate(doc)
    with pytest.raises(ProfileError, match=message):
        parse_profile(json.dumps(doc))


def test_unreadable_or_non_json_files_raise_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(bad)


def test_a_profile_nested_past_the_parsers_stack_is_a_profile_error():
    """2 KB of brackets raised RecursionError through the health loop: no model judged."""
    deep = '{"schemaVersion": 1, "features": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ProfileError, match="nested too deeply"):
        parse_profile(deep)


def test_category_key_unifies_runtime_representations():
    assert category_key(1) == category_key(1.0) == "1"
    assert category_key(True) == "true"
    assert category_key(None) is None and category_key(float("nan")) is None
    assert category_key(b"x") == "x" and category_key(2.5) == "2.5"


@pytest.mark.parametrize(
    ("field", "number"),
    [("index", "1e999"), ("index", "Infinity"), ("count", "1" + "0" * 400)],
)
def test_a_number_past_a_float_is_a_profile_error(profile, field, number):
    """int(1e999) raised OverflowError past the sidecar's `except ProfileError`: the pod
    failed at startup instead of running without drift monitoring."""
    doc = profile.to_dict()
    del doc["fingerprint"]
    doc["features"][0][field] = "@"
    text = json.dumps(doc).replace('"@"', number)
    with pytest.raises(ProfileError, match=rf"features\[0\]\.{field}"):
        parse_profile(text)
