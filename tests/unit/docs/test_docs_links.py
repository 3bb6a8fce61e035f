"""The READMEs and docs/ point only at things that exist.

Files move (manifests/ was reorganised once already); a page that sends a
reader to a path or a section that is gone is worse than no page. Checked:
relative Markdown links (file and #anchor), and repository paths written in
backquotes or in commands (`manifests/...`, `docs/...`, ...).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_pages import PAGES, ROOT, anchors, name, prose

#: Top-level folders whose paths the docs cite in backquotes.
CITED_ROOTS = ("manifests/", "docs/", "hack/", "crds/", "bench/", "tests/", "operator/")

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`([A-Za-z0-9_./{},-]+)`")


def expand_braces(path: str) -> list[str]:
    """``hack/{k8s,etcd}/go.mod`` -> both paths (one level, as the docs write them)."""
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    head, tail = path[: match.start()], path[match.end() :]
    return [p for part in match.group(1).split(",") for p in expand_braces(head + part + tail)]


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_reach_an_existing_file_and_section(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no section #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def cited_paths(text: str) -> list[str]:
    """Paths in code spans, and path-like words in code blocks (commands)."""
    found = CODE_PATH.findall(text)
    for block in re.findall(r"^```.*?^```", text, flags=re.DOTALL | re.MULTILINE):
        found += [word.strip("'\",;:()") for word in block.split()]
    return found


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_cited_repository_paths_exist(page: Path) -> None:
    missing = []
    for cited in cited_paths(page.read_text()):
        if not cited.startswith(CITED_ROOTS):
            continue
        for path in expand_braces(cited):
            if not (ROOT / path.rstrip("/")).exists():
                missing.append(path)
    assert not missing, f"{page.relative_to(ROOT)} cites paths that do not exist: {missing}"
