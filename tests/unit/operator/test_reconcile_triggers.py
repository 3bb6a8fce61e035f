"""Which ModelDeployment watch events call for a reconcile (the handlers are level-triggered)."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.operator.reconciler import needs_reconcile
from vigil.plugin.requests import ANNOTATION_REQUEST


def body(generation: int, observed: int | None, **annotations: str) -> dict[str, Any]:
    status = {} if observed is None else {"observedGeneration": observed}
    return {
        "metadata": {"name": "wine", "generation": generation, "annotations": annotations},
        "status": status,
    }


@pytest.mark.parametrize(
    ("event_type", "item", "expected", "why"),
    [
        (None, body(3, 3), True, "listed at start: resume"),
        ("ADDED", body(1, None), True, "created"),
        ("MODIFIED", body(2, 1), True, "spec changed, not handled yet"),
        ("MODIFIED", body(2, None), True, "never handled (no status yet)"),
        ("MODIFIED", body(2, 2), False, "a status write (its own, the health loop's)"),
        ("MODIFIED", body(2, 2, **{ANNOTATION_REQUEST: "promote"}), True, "a person's request"),
        ("DELETED", body(2, 1), False, "gone: garbage collection removes the children"),
    ],
)
def test_a_reconcile_follows_what_the_status_does_not_describe_yet(
    event_type: str | None, item: dict[str, Any], expected: bool, why: str
) -> None:
    assert needs_reconcile(event_type, item) is expected, why
