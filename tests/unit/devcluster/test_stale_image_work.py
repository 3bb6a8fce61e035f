"""A killed image build's scratch folder (a debootstrap root file system, /proc and /sys
perhaps mounted in it) is removed by the next build of that image, which holds the cache's
lock: it stayed under ~/.cache/vigil/images/<name>/ for good (only *.tar were pruned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.devcluster import images
from vigil.devcluster.images import Builder, ImageArchive, Recipe


def _build(builder: Builder, archive: ImageArchive, work: Path, log: Path) -> int:
    assert work.name.startswith("build-tiny-") and work.is_dir()
    builder.seen_work = work  # type: ignore[attr-defined]
    payload = work / "hello"
    payload.write_text("hi\n")
    layer = work / "layer.tar"
    images.file_layer(layer, {"/hello": (payload, 0o644)})
    config = images.image_config({"Cmd": ["/hello"]}, created_by="test")
    images.write_docker_archive(archive.path, archive.ref, [layer], config)
    return 1


def _builder(cache: Path, key: str = "one") -> Builder:
    recipe = Recipe(key=lambda builder: images.digest(key), build=_build)
    return Builder(cache, cache, log=print, recipes={"tiny": recipe})


def test_a_build_removes_the_scratch_folders_killed_builds_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unmounted: list[Path] = []

    def unmount_under(folder: Path) -> bool:
        unmounted.append(folder)
        return folder.name != "build-tiny-stillmounted"

    monkeypatch.setattr(images, "unmount_under", unmount_under)
    folder = tmp_path / "tiny"
    stale = folder / "build-tiny-k1ll3d"
    (stale / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (stale / "rootfs" / "usr" / "bin" / "python3").write_text("a gigabyte")
    mounted = folder / "build-tiny-stillmounted"
    (mounted / "rootfs" / "proc").mkdir(parents=True)
    builder = _builder(tmp_path)
    with builder.locked():
        archive = builder.ensure("tiny")
    assert archive.path.is_file()
    assert not stale.exists(), "the killed build's root file system stayed"
    assert mounted.is_dir(), "a folder with a mount left inside was deleted through it"
    assert unmounted[:2] == [stale, mounted]  # unmounted before removal
    assert not builder.seen_work.exists()  # type: ignore[attr-defined]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("build-")) == [mounted.name]


def test_a_cached_image_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder = _builder(tmp_path)
    with builder.locked():
        builder.ensure("tiny")
    stale = tmp_path / "tiny" / "build-tiny-other"
    stale.mkdir()
    monkeypatch.setattr(images, "unmount_under", lambda folder: True)
    again = _builder(tmp_path)
    with again.locked():
        again.ensure("tiny")
    assert stale.is_dir()  # no build ran: the next one removes it
