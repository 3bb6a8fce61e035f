"""What an artifact URI names: a scheme, where to get it, and how to lay it down."""

from __future__ import annotations

import posixpath
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum

from vigil.common.uris import shown_uri
from vigil.fetch.errors import PermanentError


class Scheme(StrEnum):
    HTTP = "http"
    HTTPS = "https"
    S3 = "s3"
    PVC = "pvc"


class Layout(StrEnum):
    """How a downloaded object lands in the destination folder."""

    FILE = "file"
    TAR_GZ = "tar.gz"
    ZIP = "zip"


_ARCHIVE_SUFFIXES: tuple[tuple[str, Layout], ...] = (
    (".tar.gz", Layout.TAR_GZ),
    (".tgz", Layout.TAR_GZ),
    (".zip", Layout.ZIP),
)


def layout_of(name: str) -> Layout:
    """An archive by its suffix (``.tar.gz``, ``.tgz``, ``.zip``), else one file."""
    lowered = name.lower()
    for suffix, layout in _ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix):
            return layout
    return Layout.FILE


@dataclass(frozen=True)
class ArtifactUri:
    """A parsed ``spec.model.uri``.

    ``location`` is the URL for http(s); for ``s3://bucket/key`` and
    ``pvc://claim/path`` it is ``bucket``/``claim`` and ``path`` the rest
    (without the leading slash; empty for the whole bucket or claim).
    """

    raw: str
    scheme: Scheme
    location: str
    path: str

    @property
    def is_prefix(self) -> bool:
        """An S3 URI that ends with ``/`` (or names the bucket) means every object under it."""
        return self.scheme is Scheme.S3 and (self.path == "" or self.path.endswith("/"))

    @property
    def file_name(self) -> str:
        """The last segment of the path: the name a single file gets in the folder."""
        return posixpath.basename(self.path.rstrip("/") if self.is_prefix else self.path)

    @property
    def layout(self) -> Layout:
        return Layout.FILE if self.is_prefix else layout_of(self.file_name)


def parse_uri(raw: str) -> ArtifactUri:
    """Parse and check a URI; bad input is a permanent error naming what is wrong."""
    shown = shown_uri(raw)
    try:
        parsed = urllib.parse.urlsplit(raw)
    except ValueError as error:
        raise PermanentError(f"not a URI: {error}") from None
    try:
        scheme = Scheme(parsed.scheme.lower())
    except ValueError:
        known = ", ".join(f"{s.value}://" for s in Scheme)
        raise PermanentError(
            f"unsupported URI scheme {parsed.scheme + '://' if parsed.scheme else '(none)'}"
            f" in {shown!r}: use one of {known}"
        ) from None
    if not parsed.netloc:
        raise PermanentError(f"{shown!r} names no host, bucket or claim after {scheme.value}://")
    if scheme in (Scheme.HTTP, Scheme.HTTPS) and "@" in parsed.netloc:
        # http.client would drop them silently, and every message would show them.
        raise PermanentError(
            "credentials in the URI are not supported: serve the file where a plain URL"
            " reaches it, or from an S3 store with spec.model.storage.secretRef"
        )
    if scheme in (Scheme.HTTP, Scheme.HTTPS):
        path = urllib.parse.unquote(parsed.path)
        uri = ArtifactUri(raw=raw, scheme=scheme, location=raw, path=path.lstrip("/"))
    else:
        # Keys may hold any character, '?' and '#' included: take the rest as it is.
        rest = raw.split("://", 1)[1]
        location, _, path = rest.partition("/")
        uri = ArtifactUri(raw=raw, scheme=scheme, location=location, path=path)
    name = uri.file_name
    if scheme is not Scheme.PVC and not uri.is_prefix and name in ("", ".", ".."):
        raise PermanentError(f"{shown!r} names no file (the path ends with {name or '/'!r})")
    if "\0" in name:  # "%00" in a URL: no file system takes it (open() raises ValueError)
        raise PermanentError(f"{shown!r} names a file with a NUL in its name")
    return uri
