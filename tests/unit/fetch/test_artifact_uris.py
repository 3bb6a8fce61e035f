"""Artifact URIs: schemes, where the object lives, and how it lands in the folder."""

from __future__ import annotations

import pytest

from vigil.fetch.errors import PermanentError
from vigil.fetch.uri import Layout, Scheme, layout_of, parse_uri, shown_uri


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("model.tar.gz", Layout.TAR_GZ),
        ("MODEL.TGZ", Layout.TAR_GZ),
        ("model.zip", Layout.ZIP),
        ("model.joblib", Layout.FILE),
        ("model.gz", Layout.FILE),
    ],
)
def test_archives_are_known_by_their_suffix(name: str, layout: Layout) -> None:
    assert layout_of(name) is layout


def test_an_http_uri_keeps_its_url_and_names_its_file() -> None:
    uri = parse_uri("https://models.example/wine/v2/model%20a.joblib?sig=1")
    assert uri.scheme is Scheme.HTTPS
    assert uri.location == "https://models.example/wine/v2/model%20a.joblib?sig=1"
    assert uri.file_name == "model a.joblib"
    assert uri.layout is Layout.FILE


def test_an_s3_uri_is_a_bucket_and_a_key_taken_as_written() -> None:
    uri = parse_uri("s3://models/wine/v2/model#1.tar.gz")
    assert (uri.scheme, uri.location, uri.path) == (Scheme.S3, "models", "wine/v2/model#1.tar.gz")
    assert uri.layout is Layout.TAR_GZ
    assert not uri.is_prefix


@pytest.mark.parametrize("raw", ["s3://models/wine/", "s3://models"])
def test_an_s3_uri_ending_in_a_slash_or_naming_a_bucket_is_a_prefix(raw: str) -> None:
    uri = parse_uri(raw)
    assert uri.is_prefix
    assert uri.layout is Layout.FILE


def test_a_pvc_uri_is_a_claim_and_a_path() -> None:
    uri = parse_uri("pvc://models/wine/v2")
    assert (uri.scheme, uri.location, uri.path) == (Scheme.PVC, "models", "wine/v2")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("ftp://host/model", "unsupported URI scheme ftp://"),
        ("/models/wine", "unsupported URI scheme (none)"),
        ("s3:///key", "names no host, bucket or claim"),
        ("http://host/", "names no file"),
        ("http://host/models/..", "names no file"),
        # No file name may hold one: open() would raise ValueError, a crash.
        ("http://host/m%00.bin", "'http://host/m%00.bin' names a file with a NUL in its name"),
    ],
)
def test_bad_uris_are_refused_with_what_is_wrong(raw: str, words: str) -> None:
    with pytest.raises(PermanentError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_uri(raw)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "https://h.example/m.onnx?X-Amz-Signature=abc&X-Amz-Security-Token=t",
            "https://h.example/m.onnx?…",
        ),
        ("http://user:pw@h.example:8080/a/m.bin#frag", "http://h.example:8080/a/m.bin"),
        ("https://h.example/m.onnx", "https://h.example/m.onnx"),
        ("s3://models/wine/model?v=1.bin", "s3://models/wine/model?v=1.bin"),  # a key, as it is
        ("ftp://user:pw@h.example/m?x", "ftp://h.example/m?…"),
    ],
)
def test_a_uri_is_shown_without_its_query_or_credentials(raw: str, shown: str) -> None:
    assert shown_uri(raw) == shown


@pytest.mark.parametrize(
    "raw", ["https://reader:SECRET@h.example/m.onnx", "http://SECRET@h.example/m.onnx"]
)
def test_credentials_in_an_http_uri_are_refused_without_being_shown(raw: str) -> None:
    with pytest.raises(PermanentError, match="credentials in the URI are not supported") as error:
        parse_uri(raw)
    assert "SECRET" not in str(error.value)


def test_a_refused_uri_is_named_without_its_query() -> None:
    with pytest.raises(PermanentError, match="names no file") as error:
        parse_uri("https://h.example/?X-Amz-Signature=SECRET")
    assert "SECRET" not in str(error.value)
