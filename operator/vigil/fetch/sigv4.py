"""AWS Signature Version 4 for S3 requests (header-based, unsigned-body GETs).

Implemented here rather than taken from botocore (tens of megabytes, most of
it service data) to keep the init container's image and start-up small. It
is checked against AWS's published examples and a real S3-compatible server.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALGORITHM = "AWS4-HMAC-SHA256"
#: sha256 of the empty body: a GET sends none.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = ""
    session_token: str | None = None

    def __repr__(self) -> str:
        # Never the secret, in a log or a traceback.
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """RFC 3986 percent-encoding as SigV4 wants it (S3 encodes a path once)."""
    return urllib.parse.quote(text, safe=_UNRESERVED + ("/" if keep_slash else ""))


def canonical_query(params: Sequence[tuple[str, str]]) -> str:
    encoded = sorted(
        (uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False)) for k, v in params
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_request(
    method: str, path: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
) -> tuple[str, str]:
    """The canonical request and its signed-headers list.

    ``path`` is the decoded object path (``/bucket/key``); it is encoded here. The body's
    hash is the one ``headers`` sign (``x-amz-content-sha256``, as S3 requires).
    """
    lowered = {name.lower(): " ".join(value.strip().split()) for name, value in headers.items()}
    names = sorted(lowered)
    signed = ";".join(names)
    lines = [
        method,
        uri_encode(path, keep_slash=True),
        canonical_query(params),
        "".join(f"{name}:{lowered[name]}\n" for name in names),
        signed,
        headers["x-amz-content-sha256"],
    ]
    return "\n".join(lines), signed


def sign(
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    credentials: Credentials,
    region: str,
    now: datetime.datetime,
    *,
    service: str = "s3",
    payload_sha256: str = EMPTY_SHA256,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus the date, body hash and Authorization.

    Every header in ``headers`` is signed (give it the ``host``); headers
    added to the request later (``Range``) travel unsigned, which S3 allows.
    """
    amz_date = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    signed_headers = {
        **headers,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_sha256,
    }
    if credentials.session_token:
        signed_headers["x-amz-security-token"] = credentials.session_token
    request, signed_names = canonical_request(method, path, params, signed_headers)
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_access_key, date, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    signed_headers["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )
    return signed_headers
