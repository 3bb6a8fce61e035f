"""The id scan's two spellings of its patterns match alike.

Before Python 3.11.5 possessive quantifiers match wrongly (CPython gh-106052), so there the
scan spells its patterns with atomic groups (checked there); a newer Python checks that both
match the same span from every position of documents with escapes, nesting and damage.
"""

from __future__ import annotations

import re

import pytest

from vigil.sidecar import identity

DOCUMENTS = [
    b'{"inputs": [{"name": "x", "data": [1, 2.5e-3, -4]}], "id": "a\\"b"}',
    b' \r\n{ "inputs" : [[1, [2]], {"id": "no"}] ,\t"id" : 17 }',
    b'{"a": [[[[[[[[[[[[["id"]]]]]]]]]]]]], "id": "deep"}',
    b'{"s": "\\\\\\"\\u00e9[{", "t": ["]", "}"], "id": true}',
    b'{"cut": ["never closed", {"x": "\\',
    b'{"x": [1, 2}, "id": "mismatched"]',
]


@pytest.mark.parametrize("nesting", [0, 1, 8])
def test_atomic_groups_match_as_possessive_quantifiers_do(nesting: int) -> None:
    possessive = identity.scan_patterns(True, nesting)
    atomic = identity.scan_patterns(False, nesting)
    if not identity.POSSESSIVE:  # nothing right to compare with: the scan is atomic here
        assert identity.scan_patterns(False) == identity._PATTERNS
        return
    assert atomic != possessive
    for field in ("string", "literal", "balanced"):
        one = re.compile(getattr(possessive, field), re.DOTALL)
        other = re.compile(getattr(atomic, field), re.DOTALL)
        for document in DOCUMENTS:
            for start in range(len(document)):
                first, second = one.match(document, start), other.match(document, start)
                assert (first and first.span()) == (second and second.span()), (field, start)
