"""``vigil-fetch``: download a model artifact into a folder (the init container).

Schemes: ``http://`` and ``https://`` (one file, or an archive unpacked),
``s3://`` for any S3-compatible store (SigV4, path-style or virtual-hosted),
``pvc://`` is mounted by the operator and never fetched. Streams to disk
with bounded memory, verifies an optional sha256, retries transient errors
with back-off, and ends a failure with one line that is also the
container's termination message. Standard library only: the init container
starts fast and small.
"""

from __future__ import annotations

from vigil.fetch.errors import (
    EXIT_PERMANENT,
    EXIT_TRANSIENT,
    FetchError,
    PermanentError,
    TransientError,
)

__all__ = ["EXIT_PERMANENT", "EXIT_TRANSIENT", "FetchError", "PermanentError", "TransientError"]
