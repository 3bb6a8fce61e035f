"""Reading the docs as data: pages, headings, tables, prose without code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: Every page a user reads: the README, docs/, and the manifests' READMEs.
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "manifests").rglob("*.md")]
)
CODE_BLOCK = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)
BACKQUOTED = re.compile(r"`([^`\n]+)`")


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def anchors(text: str) -> set[str]:
    """Explicit ``<a id>`` anchors and the ids GitHub gives headings (outside code)."""
    found = set(re.findall(r'<a id="([^"]+)"', text))
    for line in CODE_BLOCK.sub("", text).splitlines():
        match = re.match(r"#+\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(title.replace(" ", "-"))
    return found


def prose(text: str, *, spans: bool = False) -> str:
    """The text without code blocks (and without code spans unless ``spans``), on one line."""
    text = CODE_BLOCK.sub("", text)
    if not spans:
        text = BACKQUOTED.sub("", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Table:
    """A Markdown table: the heading it sits under, its header and its rows (cells)."""

    heading: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, title: str) -> list[str]:
        index = self.header.index(title)
        return [row[index] for row in self.rows]


def _cells(line: str) -> tuple[str, ...]:
    # A "\|" inside a cell is text, not a column border.
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return tuple(part.strip() for part in parts)


def tables(text: str) -> list[Table]:
    found: list[Table] = []
    heading = ""
    lines = CODE_BLOCK.sub("", text).splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and index + 1 < len(lines) and lines[index + 1].startswith("|--"):
            header = _cells(line)
            index += 2
            rows = []
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(_cells(lines[index]))
                index += 1
            found.append(Table(heading, header, tuple(rows)))
            continue
        index += 1
    return found


def words(cell: str) -> list[str]:
    """The CamelCase words a cell names in backquotes (`Ready`, `RolledBack`...)."""
    return [w for w in BACKQUOTED.findall(cell) if re.fullmatch(r"[A-Z][A-Za-z0-9]+", w)]


def headings(text: str, level: int) -> list[tuple[str, str]]:
    """(parent heading one level up, heading) for every heading of ``level``."""
    found = []
    parent = ""
    for line in CODE_BLOCK.sub("", text).splitlines():
        match = re.match(r"(#+)\s+(.*)", line)
        if not match:
            continue
        depth = len(match.group(1))
        if depth == level - 1:
            parent = match.group(2).strip()
        elif depth == level:
            found.append((parent, match.group(2).strip()))
    return found
