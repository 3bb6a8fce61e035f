"""A lean reader of the Prometheus text format, for the families health reads.

prometheus_client's parser handles everything and is several times slower;
a direct scrape cycle over hundreds of pods must take a fraction of the
interval, so this reads only ``vigil_`` lines of the families in
:data:`~vigil.core.window.FAMILY_LABELS` (plus the start time) and skips
the rest without parsing them.
"""

from __future__ import annotations

import math
import re

from vigil.core import metric_names
from vigil.core.window import FAMILY_LABELS, START_TIME_METRIC, SeriesKey, series_key

_WANTED = frozenset(FAMILY_LABELS) | {START_TIME_METRIC}


#: One label whose value has no escapes, as sidecars write it (no spaces).
_PLAIN_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')


def _parse_labels(text: str) -> dict[str, str]:
    """Labels of ``a="x",b="y\\"z"`` (escapes: backslash, quote, newline)."""
    if "\\" not in text:  # no escapes: one pass in C, nearly every line of a scrape
        pairs = _PLAIN_LABEL.findall(text)
        if len(pairs) == text.count('="'):
            return dict(pairs)
    return _parse_escaped_labels(text)


def _parse_escaped_labels(text: str) -> dict[str, str]:
    """What :func:`_parse_labels` reads where a value holds an escape: step by step."""
    labels: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.index("=", i)
        name = text[i:eq].strip().lstrip(",").strip()
        j = eq + 2  # skip ="
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                nxt = text[j + 1]
                value.append("\n" if nxt == "n" else nxt)
                j += 2
            else:
                value.append(text[j])
                j += 1
        labels[name] = "".join(value)
        i = j + 1
        while i < n and text[i] in ", ":
            i += 1
    return labels


def _value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)


def parse_sidecar_metrics(body: str) -> tuple[dict[SeriesKey, float], float | None]:
    """Series health reads (merged by kept labels) and the sidecar's start time."""
    values: dict[SeriesKey, float] = {}
    started_at: float | None = None
    for line in body.splitlines():
        if not line.startswith(metric_names.PREFIX):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            if name not in _WANTED:
                continue
            close = line.rindex("}")
            labels = _parse_labels(line[brace + 1 : close])
            rest = line[close + 1 :].split()
        else:
            name = line[:space]
            if name not in _WANTED:
                continue
            labels = {}
            rest = line[space + 1 :].split()
        if not rest:
            continue
        value = _value(rest[0])
        if name == START_TIME_METRIC:
            started_at = value
            continue
        key = series_key(name, labels)
        if key is not None and math.isfinite(value):
            values[key] = values.get(key, 0.0) + value
    return values, started_at
