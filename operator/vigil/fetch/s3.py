"""S3-compatible stores: where an object lives, signed requests, listings, errors.

Settings come from the environment a pod spec sets (the names AWS's SDKs
read) and credentials from files a Secret mount provides, so the operator
never reads the Secret itself.
"""

from __future__ import annotations

import datetime
import re
import urllib.parse
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vigil.fetch.errors import PermanentError
from vigil.fetch.sigv4 import Credentials, canonical_query, sign, uri_encode
from vigil.fetch.transfer import Request
from vigil.fetch.uri import shown_uri

#: Key names in the credentials folder (a mounted Secret) and in the environment.
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"
DEFAULT_REGION = "us-east-1"


class Addressing(StrEnum):
    AUTO = "auto"
    PATH = "path"
    VIRTUAL = "virtual"


@dataclass(frozen=True)
class S3Settings:
    """Where the store is and who we are to it.

    ``endpoint`` is ``scheme://host[:port]``; without one, AWS's regional
    endpoint. Path-style addressing (``host/bucket/key``) is the default
    for a custom endpoint (most S3-compatible servers want it), virtual-hosted
    (``bucket.host/key``) for AWS unless the bucket's name holds a dot.
    """

    region: str = DEFAULT_REGION
    endpoint: str | None = None
    addressing: Addressing = Addressing.AUTO
    credentials: Credentials | None = None

    @property
    def base(self) -> urllib.parse.SplitResult:
        endpoint = self.endpoint or f"https://s3.{self.region}.amazonaws.com"
        parts = urllib.parse.urlsplit(endpoint)
        shown = shown_uri(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PermanentError(f"S3 endpoint {shown!r} is not an http(s)://host[:port] URL")
        if "@" in parts.netloc:
            raise PermanentError(
                f"S3 endpoint {shown!r} must have no user or password:"
                " the keys come from spec.model.storage.secretRef"
            )
        if parts.path not in ("", "/") or parts.query:
            raise PermanentError(f"S3 endpoint {shown!r} must have no path")
        return parts

    def path_style(self, bucket: str) -> bool:
        if self.addressing is not Addressing.AUTO:
            return self.addressing is Addressing.PATH
        return self.endpoint is not None or "." in bucket

    def request(
        self,
        bucket: str,
        key: str,
        params: tuple[tuple[str, str], ...] = (),
        *,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> Request:
        """A GET of ``key`` in ``bucket`` (or of the bucket, ``key=""``), signed if we have keys."""
        base = self.base
        if self.path_style(bucket):
            host, path = base.netloc, f"/{bucket}" + (f"/{key}" if key else "")
        else:
            host, path = f"{bucket}.{base.netloc}", f"/{key}"
        url = f"{base.scheme}://{host}{uri_encode(path, keep_slash=True)}"
        if params:
            url += "?" + canonical_query(params)
        headers = {"host": host}
        if self.credentials is not None:
            headers = sign("GET", path, params, headers, self.credentials, self.region, now())
        return Request(url=url, headers=headers)


def settings_from_environment(
    environ: Mapping[str, str],
    *,
    endpoint: str | None = None,
    region: str | None = None,
    addressing: Addressing | None = None,
    credentials_dir: Path | None = None,
) -> S3Settings:
    """Flags first, then the environment (``AWS_ENDPOINT_URL_S3``, ``AWS_REGION`` ...)."""
    endpoint = endpoint or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if addressing is None:
        word = environ.get("VIGIL_S3_ADDRESSING", Addressing.AUTO.value)
        try:
            addressing = Addressing(word)
        except ValueError:
            raise PermanentError(
                f"VIGIL_S3_ADDRESSING={word!r}: use one of auto, path, virtual"
            ) from None
    return S3Settings(
        region=region or DEFAULT_REGION,
        endpoint=endpoint or None,
        addressing=addressing,
        credentials=load_credentials(credentials_dir, environ),
    )


def load_credentials(folder: Path | None, environ: Mapping[str, str]) -> Credentials | None:
    """Keys from the folder's files (a Secret mount), else the environment, else anonymous."""
    if folder is not None:
        values = {name: _read_key(folder, name) for name in (ACCESS_KEY_ID, SECRET_ACCESS_KEY)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise PermanentError(
                f"credentials folder {folder} has no {' or '.join(missing)} file"
                f" (mount a Secret with the keys {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY})"
            )
        return Credentials(
            values[ACCESS_KEY_ID], values[SECRET_ACCESS_KEY], _read_key(folder, SESSION_TOKEN)
        )
    # Stripped like the files: a Secret made with --from-file keeps the file's last line
    # break, and http.client refuses a header value ending with one.
    key_id, secret, token = (
        (environ.get(name) or "").strip()
        for name in (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    )
    if not key_id and not secret:
        return None
    if not key_id or not secret:
        given, missing_name = (
            (ACCESS_KEY_ID, SECRET_ACCESS_KEY) if key_id else (SECRET_ACCESS_KEY, ACCESS_KEY_ID)
        )
        raise PermanentError(f"{given} is set but {missing_name} is not")
    return Credentials(key_id, secret, token or None)


def _read_key(folder: Path, name: str) -> str | None:
    try:
        return (folder / name).read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PermanentError(f"cannot read {folder / name}: {error.strerror}") from None


def describe_error(
    status: int, reason: str, body: bytes, headers: Mapping[str, str] | None = None
) -> str:
    """``403 Forbidden: SignatureDoesNotMatch: The request signature ...``; for a bucket
    in another region than requests are signed for, which region to set."""
    words = f"{status} {reason}".strip()
    root = _error_root(body)
    code = _text(root, "Code") if root is not None else None
    if code:
        words += f": {code}"
    message = _text(root, "Message") if root is not None else None
    if message:
        words += f": {message}"
    if status in (301, 307) or code in _WRONG_REGION:
        region = (headers or {}).get("x-amz-bucket-region") or _region_in(root)
        if region:
            words += f" (the bucket is in {region}: set spec.model.storage.region: {region})"
    return words


#: What AWS answers a request sent to (or signed for) another region than the bucket's.
_WRONG_REGION = frozenset(
    {"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed"}
)
#: The region in an endpoint AWS names: ``models.s3.eu-west-1.amazonaws.com``.
_ENDPOINT_REGION = re.compile(
    r"(?:^|\.)s3[.-](?:dualstack\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\."
)


def _error_root(body: bytes) -> ElementTree.Element | None:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None


def _region_in(root: ElementTree.Element | None) -> str | None:
    """The bucket's region as an error body names it: ``<Region>``, else its ``<Endpoint>``."""
    if root is None:
        return None
    region = _text(root, "Region")
    if region:
        return region
    match = _ENDPOINT_REGION.search(_text(root, "Endpoint") or "")
    return match[1] if match else None


def _text(element: ElementTree.Element, name: str) -> str | None:
    """A child's words on one line (an error's Code and Message, a number, a flag)."""
    return " ".join((_raw_text(element, name) or "").split()) or None


def _raw_text(element: ElementTree.Element, name: str) -> str | None:
    """A child's text as the store wrote it: a key or a token may hold any blanks."""
    for child in element:
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text or None
    return None


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


@dataclass(frozen=True)
class ListingPage:
    objects: tuple[S3Object, ...]
    next_token: str | None


def listing_params(prefix: str, token: str | None) -> tuple[tuple[str, str], ...]:
    params = [("list-type", "2"), ("prefix", prefix)]
    if token:
        params.append(("continuation-token", token))
    return tuple(params)


def parse_listing(body: bytes) -> ListingPage:
    """A ListObjectsV2 answer's objects (folder markers, keys ending in ``/``, left out)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise PermanentError(f"the store's object listing is not XML: {error}") from None
    objects = []
    for child in root:
        if child.tag.rsplit("}", 1)[-1] != "Contents":
            continue
        key = _raw_text(child, "Key") or ""
        if key and not key.endswith("/"):
            objects.append(S3Object(key=key, size=int(_text(child, "Size") or 0)))
    truncated = (_text(root, "IsTruncated") or "").lower() == "true"
    token = _raw_text(root, "NextContinuationToken") if truncated else None
    if truncated and not token:
        raise PermanentError("the store's object listing is truncated but gives no continuation")
    return ListingPage(objects=tuple(objects), next_token=token)


def relative_key(key: str, prefix: str) -> str:
    """Where an object under the prefix lands in the folder; refuses keys that would escape."""
    relative = key[len(prefix) :].lstrip("/")
    parts = relative.split("/")
    if not relative or any(part in ("", ".", "..") for part in parts):
        raise PermanentError(f"object key {key!r} does not name a file inside the folder")
    return relative
