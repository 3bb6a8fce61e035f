"""Text from the cluster, shown on a terminal without acting on it.

Names, annotations, Event reasons and messages, kubectl's errors: anyone who may
write them in the namespace chooses their characters. A control sequence among
them would act on the terminal of the person reading (ESC c clears the screen,
OSC 52 writes the clipboard), so each control character is shown as its escape
(ESC as ``\\x1b``, a newline as ``\\n``) before the plugin adds its own colour codes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: C0 (newlines and tabs too: cluster text draws no lines or columns of its own), DEL, C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with each control character as its escape (``\\x1b``, ``\\n``, ``\\x9b``)."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def escape_controls_in(value: Any) -> Any:
    """A copy of ``value`` (JSON as kubectl read it) with every string, keys too, escaped."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, Mapping):
        return {escape_controls_in(key): escape_controls_in(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_controls_in(item) for item in value]
    return value
