"""The binary tensor extension of the Open Inference Protocol (Triton, KServe v2).

A body sent with ``Inference-Header-Content-Length: N`` is N bytes of JSON, then
the bytes of each tensor whose ``parameters.binary_data_size`` says so, in the
order the JSON lists them: numbers little-endian, a BOOL one byte each, and each
BYTES element after its length (4 bytes, little-endian). Triton's clients send
and ask for tensors so by default.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["HEADER_LENGTH", "fill_binary_data"]

#: The header (lower case) that says how long the JSON part of a body is.
HEADER_LENGTH = b"inference-header-content-length"

_DTYPES = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def fill_binary_data(doc: Any, binary: bytes) -> None:
    """Give each tensor of ``doc`` (its ``inputs`` and ``outputs``) sent in ``binary`` its
    ``data``, as the JSON form would hold it. One whose bytes are missing or do not fit
    its datatype is left without: the reader then counts a ``shape`` violation."""
    if not isinstance(doc, dict):
        return
    offset = 0
    for key in ("inputs", "outputs"):
        tensors = doc.get(key)
        for tensor in tensors if isinstance(tensors, list) else ():
            size = _binary_size(tensor)
            if size is None:
                continue
            part = binary[offset : offset + size]
            offset += size
            data = _values(tensor.get("datatype"), part) if len(part) == size else None
            if data is not None:
                tensor["data"] = data


def _binary_size(tensor: Any) -> int | None:
    parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return None
    return size


def _values(datatype: Any, part: bytes) -> list[Any] | None:
    """A tensor's elements from its bytes (None: they do not fit ``datatype``)."""
    if datatype == "BYTES":
        return _byte_strings(part)
    dtype = _DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or len(part) % np.dtype(dtype).itemsize:
        return None
    values: list[Any] = np.frombuffer(part, dtype=dtype).tolist()
    return values


def _byte_strings(part: bytes) -> list[Any] | None:
    """BYTES elements, each after its 4-byte length, as the JSON form's strings."""
    out: list[Any] = []
    at = 0
    while at < len(part):
        if at + 4 > len(part):
            return None
        length = int.from_bytes(part[at : at + 4], "little")
        at += 4
        if at + length > len(part):
            return None
        out.append(part[at : at + length].decode("utf-8", "replace"))
        at += length
    return out
