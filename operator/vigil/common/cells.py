"""How a text cell of a CSV reads as the JSON value a client sends: rules shared by
``vigil profile build`` and ``vigil golden build``, so that a profile and a golden set made
from one file key its values alike."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A number written with a leading zero ("02134", "-007"): an identifier, not a quantity.
PADDED = re.compile(r"\s*[+-]?0\d")
#: Text pandas reads as booleans when a whole column is made of them.
BOOLEANS = {
    **dict.fromkeys(("True", "TRUE", "true"), True),
    **dict.fromkeys(("False", "FALSE", "false"), False),
}

#: What a column of text cells reads as (:func:`column_kind`).
TEXT, BOOLEAN, CELLWISE = "text", "bool", ""


def column_kind(cells: Iterable[str], padded_as_text: bool = True) -> str:
    """A categorical column's cells (missing ones left out) read whole: TEXT as written when
    one is a number written with a leading zero (``padded_as_text``: the zip code "02134"
    clients send as text), BOOLEAN when all are pandas' True/False, else CELLWISE (each a
    number where it reads as one)."""
    present = list(cells)
    if padded_as_text and any(PADDED.match(cell) for cell in present):
        return TEXT
    if present and all(cell.strip() in BOOLEANS for cell in present):
        return BOOLEAN
    return CELLWISE
