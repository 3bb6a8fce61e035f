"""The sample screen in docs/howto/manual-control.md is what `kubectl vigil status` prints.

It is the real renderer's output for the fixture the status view's own tests
use (tests/unit/plugin/fixtures/status-canary.json); the fixture's messages
are checked against the code's in test_messages.py. A change of the screen
fails here with the new text to paste into the page.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

from vigil.plugin.status import render

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "howto" / "manual-control.md"
FIXTURE = ROOT / "tests" / "unit" / "plugin" / "fixtures" / "status-canary.json"
LEAD = "During a canary it reads like this:"


def sample_on_page() -> str:
    text = PAGE.read_text()
    found = re.search(re.escape(LEAD) + r"\s*\n```\n(.*?)\n```", text, flags=re.DOTALL)
    assert found, f"{PAGE.relative_to(ROOT)}: no code block after {LEAD!r}"
    return found.group(1)


def rendered() -> str:
    fixture = json.loads(FIXTURE.read_text())
    now = datetime.datetime.fromisoformat(fixture["now"].replace("Z", "+00:00"))
    return render(fixture["modelDeployment"], fixture["events"], now=now)


def test_the_status_sample_is_the_renderers_output() -> None:
    expected = rendered()
    assert sample_on_page() == expected, (
        f"the sample in {PAGE.relative_to(ROOT)} differs from what the renderer prints for "
        f"{FIXTURE.relative_to(ROOT)}; put this in the page:\n{expected}"
    )
