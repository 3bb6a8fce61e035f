"""S3 settings from flags, the environment and a Secret mount; addressing; listings; errors."""

from __future__ import annotations

import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from vigil.fetch.errors import PermanentError
from vigil.fetch.s3 import (
    Addressing,
    S3Object,
    S3Settings,
    describe_error,
    load_credentials,
    parse_listing,
    relative_key,
    settings_from_environment,
)
from vigil.fetch.sigv4 import Credentials

KEYS = Credentials("AKID", "SECRET")
WHEN = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def test_a_custom_endpoint_gets_path_style_urls_signed_for_its_host() -> None:
    settings = S3Settings(endpoint="http://127.0.0.1:8333", credentials=KEYS)
    request = settings.request("models", "wine/a b.joblib", now=lambda: WHEN)
    assert request.url == "http://127.0.0.1:8333/models/wine/a%20b.joblib"
    assert request.headers["host"] == "127.0.0.1:8333"
    assert "Credential=AKID/20261126/us-east-1/s3/aws4_request" in request.headers["Authorization"]


def test_aws_gets_virtual_hosted_urls_unless_the_bucket_has_a_dot() -> None:
    settings = S3Settings(region="eu-west-1")
    assert settings.request("models", "m.bin").url == (
        "https://models.s3.eu-west-1.amazonaws.com/m.bin"
    )
    assert settings.request("my.models", "m.bin").url == (
        "https://s3.eu-west-1.amazonaws.com/my.models/m.bin"
    )


def test_addressing_can_be_forced_either_way() -> None:
    virtual = S3Settings(endpoint="https://store.internal", addressing=Addressing.VIRTUAL)
    assert virtual.request("models", "m.bin").url == "https://models.store.internal/m.bin"
    path = S3Settings(addressing=Addressing.PATH)
    assert path.request("models", "m.bin").url == "https://s3.us-east-1.amazonaws.com/models/m.bin"


def test_a_listing_request_sends_its_query_in_canonical_order() -> None:
    settings = S3Settings(endpoint="http://127.0.0.1:8333")
    request = settings.request("models", "", (("list-type", "2"), ("prefix", "wine/v 2/")))
    assert request.url == "http://127.0.0.1:8333/models?list-type=2&prefix=wine%2Fv%202%2F"
    assert "Authorization" not in request.headers  # no keys: anonymous


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8333", "ftp://host", "http://host/base"])
def test_a_bad_endpoint_is_refused_naming_it(endpoint: str) -> None:
    with pytest.raises(PermanentError, match="S3 endpoint"):
        S3Settings(endpoint=endpoint).request("b", "k")


def test_settings_take_flags_first_then_the_sdk_environment() -> None:
    environ = {
        "AWS_ENDPOINT_URL": "http://generic:1",
        "AWS_ENDPOINT_URL_S3": "http://s3-only:2",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "VIGIL_S3_ADDRESSING": "virtual",
    }
    settings = settings_from_environment(environ)
    assert (settings.endpoint, settings.region, settings.addressing) == (
        "http://s3-only:2",
        "eu-central-1",
        Addressing.VIRTUAL,
    )
    flagged = settings_from_environment(environ, endpoint="http://flag:3", region="ap-south-1")
    assert (flagged.endpoint, flagged.region) == ("http://flag:3", "ap-south-1")


def test_an_unknown_addressing_word_is_refused() -> None:
    with pytest.raises(PermanentError, match="VIGIL_S3_ADDRESSING='sideways'"):
        settings_from_environment({"VIGIL_S3_ADDRESSING": "sideways"})


def test_credentials_come_from_a_secret_mount_before_the_environment(tmp_path: Path) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("FROMFILE\n")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("secret\n")
    environ = {"AWS_ACCESS_KEY_ID": "FROMENV", "AWS_SECRET_ACCESS_KEY": "x"}
    assert load_credentials(tmp_path, environ) == Credentials("FROMFILE", "secret", None)
    assert load_credentials(None, environ) == Credentials("FROMENV", "x", None)
    assert load_credentials(None, {}) is None


def test_half_a_key_pair_is_refused(tmp_path: Path) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("ONLY")
    with pytest.raises(PermanentError, match="has no AWS_SECRET_ACCESS_KEY file"):
        load_credentials(tmp_path, {})
    with pytest.raises(PermanentError, match="AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY"):
        load_credentials(None, {"AWS_ACCESS_KEY_ID": "ONLY"})


def test_an_s3_error_is_told_in_the_store_s_words() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
        b"<Message>The specified key does not exist.</Message><Key>m.bin</Key></Error>"
    )
    assert describe_error(404, "Not Found", body) == (
        "404 Not Found: NoSuchKey: The specified key does not exist."
    )
    assert describe_error(503, "Service Unavailable", b"<html>") == "503 Service Unavailable"


LISTING = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>models</Name><Prefix>wine/</Prefix><KeyCount>3</KeyCount>
  <IsTruncated>true</IsTruncated><NextContinuationToken>abc=</NextContinuationToken>
  <Contents><Key>wine/</Key><Size>0</Size></Contents>
  <Contents><Key>wine/model-settings.json</Key><Size>120</Size></Contents>
  <Contents><Key>wine/sub/model.joblib</Key><Size>4096</Size></Contents>
</ListBucketResult>"""


def test_a_listing_gives_objects_without_folder_markers_and_its_continuation() -> None:
    page = parse_listing(LISTING)
    assert page.objects == (
        S3Object("wine/model-settings.json", 120),
        S3Object("wine/sub/model.joblib", 4096),
    )
    assert page.next_token == "abc="
    last = parse_listing(LISTING.replace(b"<IsTruncated>true", b"<IsTruncated>false"))
    assert last.next_token is None


def test_listed_keys_and_the_continuation_keep_their_blanks() -> None:
    keys = ["wine/a  b.bin", "wine/v1 ", "wine/ lead.bin", "wine/tab\there.bin", "wine/x\ny"]
    contents = "".join(f"<Contents><Key>{escape(k)}</Key><Size>1</Size></Contents>" for k in keys)
    body = (
        "<ListBucketResult><IsTruncated> true\n</IsTruncated>"
        f"{contents}<NextContinuationToken> a  b=\t</NextContinuationToken></ListBucketResult>"
    )
    page = parse_listing(body.encode())
    assert [obj.key for obj in page.objects] == keys
    assert page.next_token == " a  b=\t"
    # An error's words are still read on one line.
    error = b"<Error><Code> AccessDenied </Code><Message>Access\n   Denied</Message></Error>"
    assert describe_error(403, "Forbidden", error) == "403 Forbidden: AccessDenied: Access Denied"


def test_keys_under_a_prefix_land_inside_the_folder_or_are_refused() -> None:
    assert relative_key("wine/sub/model.joblib", "wine/") == "sub/model.joblib"
    for key in ("wine/../escape", "wine/a//b", "wine/./x"):
        with pytest.raises(PermanentError, match="does not name a file inside the folder"):
            relative_key(key, "wine/")


def test_credentials_from_the_environment_are_stripped_like_those_of_a_secret_mount() -> None:
    # kubectl create secret --from-file keeps the file's last line break.
    environ = {
        "AWS_ACCESS_KEY_ID": "AKID\n",
        "AWS_SECRET_ACCESS_KEY": " secret\n",
        "AWS_SESSION_TOKEN": "token\n",
    }
    assert load_credentials(None, environ) == Credentials("AKID", "secret", "token")
    assert load_credentials(None, {"AWS_ACCESS_KEY_ID": "\n", "AWS_SECRET_ACCESS_KEY": ""}) is None


@pytest.mark.parametrize(
    ("status", "body", "headers", "region"),
    [
        pytest.param(
            301,
            b"<Error><Code>PermanentRedirect</Code><Message>Use the endpoint.</Message>"
            b"<Endpoint>models.s3.ap-southeast-2.amazonaws.com</Endpoint></Error>",
            {},
            "ap-southeast-2",
            id="the endpoint in the body",
        ),
        pytest.param(
            400,
            b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1'"
            b" is wrong; expecting 'eu-central-1'</Message><Region>eu-central-1</Region></Error>",
            {},
            "eu-central-1",
            id="a signature for another region",
        ),
        pytest.param(301, b"", {"x-amz-bucket-region": "us-west-2"}, "us-west-2", id="header"),
    ],
)
def test_a_bucket_in_another_region_is_told_which_region_to_set(
    status: int, body: bytes, headers: dict[str, str], region: str
) -> None:
    words = describe_error(status, "Moved", body, headers)
    assert words.endswith(f" (the bucket is in {region}: set spec.model.storage.region: {region})")


def test_a_region_header_on_another_error_adds_no_region_advice() -> None:
    body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    words = describe_error(403, "Forbidden", body, {"x-amz-bucket-region": "eu-west-1"})
    assert words == "403 Forbidden: AccessDenied: Access Denied"
