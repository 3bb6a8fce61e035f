"""One class label, whatever form it comes in: the rule the shadow comparison (the stable
against the candidate) and the golden replay (research against the candidate) share.

A replacement answering an INT64 0/1 where the model it replaces answered a BOOL
true/false makes the same decisions: both comparisons, and the prediction shift between
their class counts, must say so.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

#: The boolean each of the keys 0 and 1 stands for.
NUMBERS_AS_BOOLEANS = {"0": "false", "1": "true"}


def class_key(key: str | None) -> str | None:
    """A class label's key from its category key (``vigil.profile.model.category_key``:
    ``1`` and ``1.0`` are ``"1"``, ``True`` is ``"true"``): a boolean's forms are one label,
    keyed as booleans are: ``True``, ``1``, ``"true"`` (any case) and ``"1"`` are ``"true"``
    (a BOOL tensor, a 0/1 column, pandas' ``True``); ``False``, ``0``... ``"false"``."""
    if key is None:
        return None
    lowered = key.lower()
    if lowered in ("true", "false"):
        return lowered
    return NUMBERS_AS_BOOLEANS.get(key, key)


def counts_by_class(counts: Mapping[str, float]) -> dict[str, float]:
    """Counts keyed by class label, a boolean's forms added up as one (:func:`class_key`): a
    replacement answering 1 where the model it replaces answered true predicts the same."""
    merged: dict[str, float] = {}
    for key, count in counts.items():
        label = class_key(key) or key
        merged[label] = merged.get(label, 0.0) + count
    return merged


@functools.lru_cache(maxsize=64)
def boolean_aliases(classes: tuple[str, ...]) -> Mapping[str, str]:
    """The keys 0 and 1 stand for, when a reference's classes are booleans (false, true or
    both): a 0 or 1 from the model, a truth or an arg-max column then names false or true.
    Empty otherwise. Cached: asked for every prediction kept for labels."""
    booleans = bool(classes) and set(classes) <= {"false", "true"}
    return NUMBERS_AS_BOOLEANS if booleans else {}
