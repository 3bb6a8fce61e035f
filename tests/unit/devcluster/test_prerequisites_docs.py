"""What the docs say about building and the host, against the Makefile and the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vigil.devcluster import images
from vigil.devcluster.engine import ImageError

ROOT = Path(__file__).resolve().parents[3]

TRIXIE_POLICY = """\
Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 http://deb.debian.org/debian trixie/main amd64 Packages
     release v=13.2,o=Debian,a=stable,n=trixie,l=Debian,c=main,b=amd64
     origin deb.debian.org
Pinned packages:
"""


def test_the_development_guide_gives_make_builds_jobs_as_the_makefile_sets_them() -> None:
    jobs = re.search(r"^BUILD_JOBS \?= (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert jobs is not None
    guide = " ".join((ROOT / "docs" / "development.md").read_text().split())
    assert f"`make builds` starts all seven at once (`BUILD_JOBS`, default {jobs[1]}" in guide
    assert "`make builds` (`-j4`)" not in guide


def test_the_readme_asks_for_a_debian_12_host() -> None:
    readme = (ROOT / "README.md").read_text()
    prerequisites = readme.split("### Prerequisites", 1)[1].split("\n## ", 1)[0]
    assert "Debian 12 (bookworm) host" in prerequisites


def test_a_host_without_bookworm_sources_is_told_it_must_be_debian_12(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images, "run", lambda command, what: TRIXIE_POLICY)
    with pytest.raises(ImageError) as error:
        images.debian_sources()
    message = str(error.value)
    assert "the host must be Debian 12 (bookworm)" in message
    assert "apt-get update" not in message


def _prerequisites() -> str:
    readme = (ROOT / "README.md").read_text()
    return " ".join(readme.split("### Prerequisites", 1)[1].split("\n## ", 1)[0].split())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_readmes_go_is_new_enough_for_every_module_it_builds() -> None:
    """It said Go 1.26: with GOTOOLCHAIN=local a Go older than a go.mod's go line refuses it.
    Argo CD's build fetches the Go its module asks for (GOTOOLCHAIN in its script)."""
    stated = re.search(r"Go (\d+\.\d+\.\d+) or newer", _prerequisites())
    assert stated is not None
    asked = {
        go_mod.relative_to(ROOT): re.search(r"^go (\S+)$", go_mod.read_text(), re.M)
        for go_mod in (ROOT / "hack").rglob("go.mod")
        if "argocd" not in go_mod.parts
    }
    assert len(asked) >= 5
    for go_mod, line in asked.items():
        assert line is not None, go_mod
        assert _version(stated[1]) >= _version(line[1]), f"{go_mod} asks for go {line[1]}"


def test_the_readme_gives_the_pythons_the_makefile_makes_mlservers_environment_with() -> None:
    pythons = re.search(r"^MLSERVER_PYTHONS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pythons is not None
    assert " or ".join(pythons[1].split()) == "3.11 or 3.12"
    prerequisites = _prerequisites()
    assert "Python 3.11 or 3.12 (MLServer 1.7.1 runs on no newer one" in prerequisites
    assert "`make PYTHON=python3.12 install`" in prerequisites
    assert "(Debian's `python3-venv`)" in prerequisites
