"""URIs as messages show them: no query, no user or password."""

from __future__ import annotations

import urllib.parse

#: Schemes whose "?" and "#" belong to the key or path, not to a query or fragment.
_WHOLE = ("s3", "pvc")


def shown_uri(raw: str) -> str:
    """The URI as logs and messages show it: ``scheme://host/path``, a query as ``?…``.

    A presigned URL's query holds its signature and token, and ``user:password@``
    a password: logs, conditions and Events are read more widely than the spec.
    S3 and PVC URIs are shown whole: a '?' or '#' there is part of the key.
    """
    try:
        parts = urllib.parse.urlsplit(raw)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "(an unparsable URI)"
    if not parts.scheme or parts.scheme.lower() in _WHOLE:
        return raw
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


def host_port(host: str, port: int | str) -> str:
    """``host:port`` as a URL's authority: an IPv6 address in brackets (a pod IP may be one)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
