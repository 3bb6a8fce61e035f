"""Reading users' files as text."""

from __future__ import annotations


def not_utf8(data: bytes) -> str:
    """Where bytes stop being UTF-8, as ``line N: byte 0xNN`` (empty when they are UTF-8).

    Decoding the whole again because a text reader decodes ahead: its position is vague.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return f"line {line}: byte {data[exc.start]:#04x}"
    return ""


def without_bom(text: str | bytes) -> str | bytes:
    """The text past a leading UTF-8 byte order mark. Saved by Notepad or PowerShell
    ("UTF8"), a file keeps one, and so does a ConfigMap made from it: json.loads refuses
    a str that starts with one."""
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    return text.removeprefix(b"\xef\xbb\xbf")
