"""SigV4 signatures match AWS's published S3 examples (header-based authentication)."""

from __future__ import annotations

import datetime

from vigil.fetch.sigv4 import Credentials, canonical_query, sign, uri_encode

EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
WHEN = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)
HOST = {"host": "examplebucket.s3.amazonaws.com"}


def signature(headers: dict[str, str]) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


def test_get_object_with_a_range_matches_the_aws_example() -> None:
    headers = sign(
        "GET", "/test.txt", [], {**HOST, "range": "bytes=0-9"}, EXAMPLE, "us-east-1", WHEN
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_list_objects_matches_the_aws_example() -> None:
    params = [("max-keys", "2"), ("prefix", "J")]
    headers = sign("GET", "/", params, HOST, EXAMPLE, "us-east-1", WHEN)
    assert signature(headers) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_a_query_without_value_matches_the_aws_lifecycle_example() -> None:
    headers = sign("GET", "/", [("lifecycle", "")], HOST, EXAMPLE, "us-east-1", WHEN)
    assert signature(headers) == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"


def test_a_session_token_is_sent_and_signed() -> None:
    with_token = Credentials(EXAMPLE.access_key_id, EXAMPLE.secret_access_key, "token/1")
    headers = sign("GET", "/k", [], HOST, with_token, "us-east-1", WHEN)
    assert headers["x-amz-security-token"] == "token/1"
    assert "x-amz-security-token" in headers["Authorization"]


def test_paths_are_encoded_once_and_queries_fully() -> None:
    assert uri_encode("/models/a b+c/ü.bin", keep_slash=True) == "/models/a%20b%2Bc/%C3%BC.bin"
    assert canonical_query([("prefix", "a/b c"), ("list-type", "2")]) == (
        "list-type=2&prefix=a%2Fb%20c"
    )


def test_the_secret_never_shows_in_a_repr() -> None:
    assert EXAMPLE.secret_access_key not in repr(EXAMPLE)
