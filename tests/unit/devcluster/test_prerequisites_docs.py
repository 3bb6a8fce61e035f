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
