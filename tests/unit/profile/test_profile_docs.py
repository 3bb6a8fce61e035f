"""What the profile pages say about binning and judging is what the code does."""

import json
import re
from pathlib import Path

import numpy as np

from vigil.core.drift import divergence
from vigil.profile import build_profile

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _first_judged(proportions: tuple[float, ...], slots: list[int]) -> int:
    """The fewest live rows, spread over ``slots``, the divergence is computed from."""
    rows = 1
    while True:
        counts = [0.0] * len(proportions)
        for i in range(rows):
            counts[slots[i % len(slots)]] += 1
        if divergence("psi", list(proportions), counts, reference_rows=1000) is not None:
            return rows
        rows += 1


def test_the_howto_gives_the_rows_drift_is_first_judged_from():
    """It said 60 for 10 bins; the outer slots count only once live values fall there."""
    text = " ".join((DOCS / "howto" / "reference-profile.md").read_text().split())
    found = re.search(
        r"\((\d+) for a numeric feature's (\d+) bins when its values stay in range, up to (\d+)",
        text,
    )
    assert found, "the howto no longer gives the example: check it against the code"
    inside, bins, outside = (int(g) for g in found.groups())
    profile = build_profile(np.arange(1000.0).reshape(-1, 1), bins=bins)
    proportions = profile.features[0].proportions
    assert _first_judged(proportions, list(range(1, bins + 1))) == inside
    assert _first_judged(proportions, list(range(bins + 2))) == outside


def test_the_format_page_gives_the_float32_tolerance_of_the_edge_rule():
    text = " ".join((DOCS / "reference-profile.md").read_text().split())
    rule = text[text.index("Edge rule") : text.index("Categorical features add")]
    assert "float32" in rule


def test_the_format_page_gives_the_category_keys_the_code_computes():
    import decimal

    from vigil.profile import category_key

    text = " ".join((DOCS / "reference-profile.md").read_text().split())
    assert (
        "`Decimal('11.00')` -> `\"11\"`" in text and category_key(decimal.Decimal("11.00")) == "11"
    )
    assert (
        "`Decimal('2.50')` -> `\"2.5\"`" in text and category_key(decimal.Decimal("2.50")) == "2.5"
    )
    assert '`float32(0.1)` -> `"0.1"`' in text and category_key(np.float32(0.1)) == "0.1"


def test_the_howto_gives_the_size_limits_the_build_checks():
    from vigil.profile.model import APPLY_ANNOTATION_BYTES, CONFIGMAP_BYTES

    text = " ".join((DOCS / "howto" / "reference-profile.md").read_text().split())
    found = re.search(r"refuses a profile over (\d+) MiB of JSON, and warns above (\d+) KiB", text)
    assert found, "the howto no longer gives the limits: check them against the code"
    assert int(found.group(1)) * 2**20 == CONFIGMAP_BYTES
    assert int(found.group(2)) * 2**10 == APPLY_ANNOTATION_BYTES


def test_the_format_page_gives_the_edges_of_a_flag_and_a_rating():
    """A 0/1 flag had one bin and a 1-5 rating four: the page now gives one bin per value."""
    text = " ".join((DOCS / "reference-profile.md").read_text().split())
    for values, edges in (
        ([0.0, 1.0], "[0, 0.5, 1]"),
        ([1, 2, 3, 4, 5], "[1, 1.5, 2.5, 3.5, 4.5, 5]"),
    ):
        profile = build_profile(np.array(values * 20, dtype=float).reshape(-1, 1))
        assert f"`{edges}`" in text
        assert list(profile.features[0].edges) == json.loads(edges)


def test_the_pages_say_the_profiles_drift_settings_are_not_judged_with():
    """The format page called them "defaults": nothing in the operator reads them."""
    fmt = " ".join((DOCS / "reference-profile.md").read_text().split())
    row = fmt[fmt.index("| `drift` |") : fmt.index("| `validation` |")]
    assert "not read" in row and "spec.monitoring.drift" in row
    howto = " ".join((DOCS / "howto" / "reference-profile.md").read_text().split())
    assert "`--threshold` set the profile's defaults" not in howto
