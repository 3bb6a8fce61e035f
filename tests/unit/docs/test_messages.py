"""Every message the docs quote is one the operator writes, word for word.

A quote with a figure in it ("error rate 3.2% > 1.0% over 5m (1000 requests)")
and every line of a ```text block are messages a person will search for;
they must have the words, units and order of a message the code writes
(tests/unit/docs/code_catalogue.py runs the real decisions and collects
them). Figures and revisions may differ; "..." stands for any text.
The status screen's fixture is held to the same rule, so the sample in
docs/howto/manual-control.md shows real messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from code_catalogue import written_by_the_code
from doc_pages import CODE_BLOCK, PAGES, ROOT, name

#: Quoted text that starts and ends with a character (not `| "" |` table cells).
QUOTE = re.compile(r'"(?=\S)([^"]+?)(?<=\S)"')
TEXT_BLOCK = re.compile(r"^```text\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
#: Generated from the CRD, whose descriptions quote example values ("2024-05-01").
NOT_MESSAGES = {"docs/crd-reference.md"}
FIXTURE = ROOT / "tests" / "unit" / "plugin" / "fixtures" / "status-canary.json"


def quoted_messages(page: Path) -> list[str]:
    text = page.read_text()
    found = [line for block in TEXT_BLOCK.findall(text) for line in block.splitlines() if line]
    paragraphs = re.sub(r"`[^`\n]*`", "", CODE_BLOCK.sub("", text)).split("\n\n")
    for paragraph in paragraphs:
        found += [
            " ".join(quote.split()) for quote in QUOTE.findall(paragraph) if re.search(r"\d", quote)
        ]
    return found


CHECKED = [page for page in PAGES if name(page) not in NOT_MESSAGES and quoted_messages(page)]


def test_the_quoted_messages_are_found() -> None:
    assert {name(page) for page in CHECKED} >= {
        "docs/troubleshooting.md",
        "docs/health.md",
        "docs/concepts.md",
    }


@pytest.mark.parametrize("page", CHECKED, ids=name)
def test_every_quoted_message_is_one_the_code_writes(page: Path) -> None:
    unknown = [quote for quote in quoted_messages(page) if not written_by_the_code(quote)]
    assert not unknown, (
        f"{name(page)} quotes messages the operator does not write (figures may differ, "
        f"words may not): {unknown}"
    )


def fixture_messages() -> Iterator[str]:
    fixture: dict[str, Any] = json.loads(FIXTURE.read_text())
    status = fixture["modelDeployment"]["status"]
    for condition in status["conditions"]:
        yield condition["message"]
    yield status["candidate"]["message"]
    for entry in status["history"]:
        yield entry["reason"]
    for event in fixture["events"]:
        yield event["message"]


def test_the_status_screens_fixture_holds_only_messages_the_code_writes() -> None:
    unknown = [text for text in fixture_messages() if not written_by_the_code(text)]
    assert not unknown, f"{FIXTURE.relative_to(ROOT)}: not the code's messages: {unknown}"
