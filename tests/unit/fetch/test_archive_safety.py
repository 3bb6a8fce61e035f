"""Archives unpack inside their folder or not at all: traversal, links and special files refused."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from vigil.fetch.errors import PermanentError
from vigil.fetch.unpack import MAX_TRAILING_BYTES, UnsafeArchive, checked_name, unpack
from vigil.fetch.uri import Layout


def tar_gz(path: Path, members: list[tuple[str, bytes | str | None, int]]) -> Path:
    """``(name, data, type)``: bytes for a file, a link target for links, None for a folder."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind  # type: ignore[assignment]
            if kind == tarfile.REGTYPE:
                assert isinstance(data, bytes)
                info.size = len(data)
                info.mode = 0o4755 if name.endswith(".sh") else 0o666
                tar.addfile(info, io.BytesIO(data))
            else:
                if isinstance(data, str):
                    info.linkname = data
                tar.addfile(info)
    return path


def zip_file(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """``(name, data, unix mode)``: a symlink's data is its target."""
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zipped.writestr(info, data)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "box" / "out"


def test_a_model_folder_unpacks_with_its_files_folders_and_inner_links(
    tmp_path: Path, out: Path
) -> None:
    archive = tar_gz(
        tmp_path / "m.tar.gz",
        [
            ("wine/", None, tarfile.DIRTYPE),
            ("wine/model-settings.json", b"{}", tarfile.REGTYPE),
            ("wine/model.joblib", b"weights", tarfile.REGTYPE),
            ("wine/start.sh", b"#!/bin/sh", tarfile.REGTYPE),
            ("wine/current", "model.joblib", tarfile.SYMTYPE),
            ("wine/copy.joblib", "wine/model.joblib", tarfile.LNKTYPE),
        ],
    )
    assert unpack(archive, Layout.TAR_GZ, out) == 5
    assert (out / "wine" / "model.joblib").read_bytes() == b"weights"
    assert os.readlink(out / "wine" / "current") == "model.joblib"
    assert (out / "wine" / "copy.joblib").read_bytes() == b"weights"
    # No setuid, no group or world write; the owner's execute bit stays.
    assert stat.S_IMODE((out / "wine" / "start.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "wine" / "model.joblib").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([("../evil", b"x", tarfile.REGTYPE)], "'../evil' escapes the destination folder"),
        ([("a/../../evil", b"x", tarfile.REGTYPE)], "escapes the destination folder"),
        ([("/tmp/evil", b"x", tarfile.REGTYPE)], "'/tmp/evil' has an absolute path"),
        ([("etc", "/etc", tarfile.SYMTYPE)], "points to the absolute path '/etc'"),
        ([("up", "../..", tarfile.SYMTYPE)], "points to '../..', outside the destination folder"),
        ([("deep/up", "../../evil", tarfile.SYMTYPE)], "outside the destination folder"),
        (
            [("here", ".", tarfile.SYMTYPE), ("out", "here/..", tarfile.SYMTYPE)],
            "'out' points to 'here/..', outside",
        ),
        (
            # Harmless when made ("s/b" did not exist yet), outside once "s/b" is made.
            [("s/a", "b/../..", tarfile.SYMTYPE), ("s/b", "..", tarfile.SYMTYPE)],
            "'s/a' leads outside the destination folder through other links",
        ),
        ([("passwd", "../../etc/passwd", tarfile.LNKTYPE)], "escapes the destination folder"),
        ([("copy", "missing", tarfile.LNKTYPE)], "not a file inside the destination folder"),
        ([("null", None, tarfile.CHRTYPE)], "'null' is a device, FIFO or other special file"),
        ([("pipe", None, tarfile.FIFOTYPE)], "is a device, FIFO or other special file"),
        ([("long", "a/" * 600, tarfile.SYMTYPE)], "'long' has a target over 1024 bytes"),
        (
            [("d/file", b"x", tarfile.REGTYPE), ("d", ".", tarfile.SYMTYPE)],
            "'d' replaces a folder",
        ),
    ],
)
def test_a_tar_that_would_leave_its_folder_is_refused(
    tmp_path: Path, out: Path, members: list[tuple[str, bytes | str | None, int]], words: str
) -> None:
    archive = tar_gz(tmp_path / "bad.tar.gz", members)
    with pytest.raises(UnsafeArchive, match=words.replace(".", r"\.")):
        unpack(archive, Layout.TAR_GZ, out)
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["out"]
    assert not (tmp_path / "evil").exists()


def test_a_zip_unpacks_with_its_folders_and_inner_links(tmp_path: Path, out: Path) -> None:
    archive = zip_file(
        tmp_path / "m.zip",
        [
            ("wine/", b"", stat.S_IFDIR | 0o755),
            ("wine/model.joblib", b"weights", stat.S_IFREG | 0o644),
            ("wine/current", b"model.joblib", stat.S_IFLNK | 0o777),
            ("plain.txt", b"no unix mode", 0),
        ],
    )
    assert unpack(archive, Layout.ZIP, out) == 3
    assert (out / "wine" / "current").read_bytes() == b"weights"
    assert (out / "plain.txt").read_bytes() == b"no unix mode"


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([("../evil", b"x", stat.S_IFREG | 0o644)], "escapes the destination folder"),
        ([("link", b"../../evil", stat.S_IFLNK | 0o777)], "outside the destination folder"),
        ([("link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "the absolute path '/etc/passwd'"),
        ([("fifo", b"", stat.S_IFIFO | 0o644)], "device, FIFO or other special file"),
        ([("link", b"a/" * 600, stat.S_IFLNK | 0o777)], "has a target over 1024 bytes"),
    ],
)
def test_a_zip_that_would_leave_its_folder_is_refused(
    tmp_path: Path, out: Path, members: list[tuple[str, bytes, int]], words: str
) -> None:
    archive = zip_file(tmp_path / "bad.zip", members)
    with pytest.raises(UnsafeArchive, match=words.replace(".", r"\.")):
        unpack(archive, Layout.ZIP, out)
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(("layout", "suffix"), [(Layout.TAR_GZ, ".tar.gz"), (Layout.ZIP, ".zip")])
def test_a_broken_archive_is_a_permanent_error_naming_the_file(
    tmp_path: Path, out: Path, layout: Layout, suffix: str
) -> None:
    archive = tmp_path / f"model{suffix}"
    archive.write_bytes(b"not an archive at all")
    with pytest.raises(PermanentError, match=f"model{suffix} is not a readable"):
        unpack(archive, layout, out)


@pytest.mark.parametrize(("name", "kept"), [("./a/./b", "a/b"), ("a//b/", "a/b"), (".", "")])
def test_harmless_names_are_normalised(name: str, kept: str) -> None:
    assert checked_name(name) == kept


def test_overlong_names_are_refused() -> None:
    with pytest.raises(UnsafeArchive, match="longer than 1024 bytes"):
        checked_name("a/" * 600)


def test_names_that_are_no_utf8_are_measured_by_their_bytes() -> None:
    # tarfile hands over a byte that is no UTF-8 as a surrogate: one byte on disk.
    assert checked_name("mod\udce8le/" + "w" * 1000) == "mod\udce8le/" + "w" * 1000
    with pytest.raises(UnsafeArchive, match="longer than 1024 bytes"):
        checked_name("\udce8" * 1025)


def test_a_tar_from_a_latin1_system_unpacks_its_names_byte_for_byte(
    tmp_path: Path, out: Path
) -> None:
    """As GNU tar does: the names are the archive's bytes, whatever they encode."""
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("modèle/poids.bin")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"weights"))
        for name, kind in (("lien-modèle", tarfile.SYMTYPE), ("copie-modèle", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "modèle/poids.bin"
            tar.addfile(info)
    assert unpack(archive, Layout.TAR_GZ, out) == 3
    raw = os.fsencode(out)
    assert sorted(os.listdir(raw)) == [b"copie-mod\xe8le", b"lien-mod\xe8le", b"mod\xe8le"]
    assert os.listdir(raw + b"/mod\xe8le") == [b"poids.bin"]
    for name in (b"mod\xe8le/poids.bin", b"lien-mod\xe8le", b"copie-mod\xe8le"):
        with open(raw + b"/" + name, "rb") as unpacked:
            assert unpacked.read() == b"weights"
    assert os.readlink(raw + b"/lien-mod\xe8le") == b"mod\xe8le/poids.bin"


def model_tar_gz(path: Path) -> Path:
    return tar_gz(
        path, [(f"m/part-{i}", b"weights %d" % i * 50, tarfile.REGTYPE) for i in range(8)]
    )


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-8], id="gzip trailer cut off"),
        pytest.param(lambda data: data[:-4] + b"\0\0\0\0", id="wrong length"),
        pytest.param(lambda data: data[:-8] + bytes(4) + data[-4:], id="wrong CRC"),
    ],
)
def test_a_tar_gz_cut_short_or_corrupted_is_not_unpacked_as_complete(
    tmp_path: Path, out: Path, damage
) -> None:
    # tarfile alone stops at its end-of-archive blocks and never checks gzip's trailer.
    archive = model_tar_gz(tmp_path / "model.tar.gz")
    archive.write_bytes(damage(archive.read_bytes()))
    with pytest.raises(PermanentError, match=r"model\.tar\.gz is not a readable"):
        unpack(archive, Layout.TAR_GZ, out)


def test_a_tar_gz_with_its_padding_unpacks_and_one_padded_past_a_mebibyte_is_refused(
    tmp_path: Path, out: Path
) -> None:
    # A gzip stream may run on long after the tar's end (zeros compress a thousandfold).
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("model.bin")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"w"))
    padded = tmp_path / "padded.tar.gz"
    padded.write_bytes(gzip.compress(tar.getvalue() + bytes(512 * 1024)))
    assert unpack(padded, Layout.TAR_GZ, out) == 1
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(tar.getvalue() + bytes(MAX_TRAILING_BYTES + 1)))
    with pytest.raises(PermanentError, match=r"bomb\.tar\.gz: more than 1 MiB follows the end"):
        unpack(bomb, Layout.TAR_GZ, tmp_path / "other")


def test_a_symlink_above_the_archives_root_is_refused_even_when_it_lands_inside(
    tmp_path: Path, out: Path
) -> None:
    """The folder is a work area moved into place afterwards: "../out/x" resolves inside it
    now, and outside the model folder once moved."""
    archive = tar_gz(
        tmp_path / "m.tar.gz",
        [("model.bin", b"w", tarfile.REGTYPE), ("escape", "../out/model.bin", tarfile.SYMTYPE)],
    )
    with pytest.raises(UnsafeArchive, match=r"'escape' points to '\.\./out/model\.bin', above"):
        unpack(archive, Layout.TAR_GZ, out)


def test_a_member_clashing_with_another_is_a_permanent_error_not_a_crash(
    tmp_path: Path, out: Path
) -> None:
    archive = tar_gz(
        tmp_path / "m.tar.gz", [("a", b"x", tarfile.REGTYPE), ("a/", None, tarfile.DIRTYPE)]
    )
    with pytest.raises(PermanentError, match=r"cannot write .*/out/a"):
        unpack(archive, Layout.TAR_GZ, out)


def test_a_zip_compression_python_cannot_read_is_a_permanent_error(
    tmp_path: Path, out: Path
) -> None:
    archive = zip_file(tmp_path / "m.zip", [("model.bin", b"weights", stat.S_IFREG | 0o644)])
    data = bytearray(archive.read_bytes())
    deflate64 = (9).to_bytes(2, "little")
    data[8:10] = deflate64  # the local header's compression method
    central = data.index(b"PK\x01\x02")
    data[central + 10 : central + 12] = deflate64
    archive.write_bytes(bytes(data))
    with pytest.raises(PermanentError, match=r"m\.zip is not a readable .*compression"):
        unpack(archive, Layout.ZIP, out)


def free_room(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    real = shutil.disk_usage

    def disk_usage(path: str | os.PathLike[str]) -> Any:
        return real(path)._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


@pytest.mark.parametrize(("layout", "suffix"), [(Layout.TAR_GZ, ".tar.gz"), (Layout.ZIP, ".zip")])
def test_an_archive_unpacking_past_the_free_room_fails_before_filling_the_disk(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, layout: Layout, suffix: str
) -> None:
    zeros = bytes(4 << 20)  # compresses a thousandfold
    if layout is Layout.TAR_GZ:
        archive = tar_gz(tmp_path / "bomb.tar.gz", [("zeros.bin", zeros, tarfile.REGTYPE)])
    else:
        archive = tmp_path / "bomb.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr("zeros.bin", zeros)
    free_room(monkeypatch, 1 << 20)
    with pytest.raises(PermanentError, match=rf"no space left on device: bomb{suffix} unpacks to"):
        unpack(archive, layout, out)
    assert not (out / "zeros.bin").exists()


def test_hard_links_count_for_the_room_they_take_as_copies(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = bytes(1 << 20)
    members: list[tuple[str, bytes | str | None, int]] = [("w.bin", weights, tarfile.REGTYPE)]
    members += [(f"copy-{i}", "w.bin", tarfile.LNKTYPE) for i in range(8)]
    archive = tar_gz(tmp_path / "links.tar.gz", members)
    free_room(monkeypatch, 4 << 20)
    with pytest.raises(PermanentError, match=r"no space left on device: links\.tar\.gz unpacks"):
        unpack(archive, Layout.TAR_GZ, out)


def test_a_later_member_of_the_same_name_wins_as_with_gnu_tar(tmp_path: Path, out: Path) -> None:
    """An archive updated with ``tar -r``: what GNU tar unpacks, every entry in its order."""
    archive = tar_gz(
        tmp_path / "m.tar.gz",
        [
            ("v1.bin", b"old model", tarfile.REGTYPE),
            ("model.bin", "v1.bin", tarfile.SYMTYPE),
            ("model.bin", b"new model", tarfile.REGTYPE),  # appended: replaces the link
            ("a", b"v1", tarfile.REGTYPE),
            ("b", "a", tarfile.LNKTYPE),  # a's content at this point of the archive
            ("a", b"v2", tarfile.REGTYPE),
            ("current", b"placeholder", tarfile.REGTYPE),
            ("current", "v1.bin", tarfile.SYMTYPE),  # a later link replaces the file
        ],
    )
    assert unpack(archive, Layout.TAR_GZ, out) == 5
    assert not (out / "model.bin").is_symlink()
    assert (out / "model.bin").read_bytes() == b"new model"
    assert (out / "b").read_bytes() == b"v1"
    assert (out / "a").read_bytes() == b"v2"
    assert os.readlink(out / "current") == "v1.bin"


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_a_zip_file_after_a_link_of_the_same_name_replaces_it(tmp_path: Path, out: Path) -> None:
    archive = zip_file(
        tmp_path / "m.zip",
        [
            ("v1.bin", b"old model", stat.S_IFREG | 0o644),
            ("model.bin", b"v1.bin", stat.S_IFLNK | 0o777),
            ("model.bin", b"new model", stat.S_IFREG | 0o644),
        ],
    )
    assert unpack(archive, Layout.ZIP, out) == 2
    assert not (out / "model.bin").is_symlink()
    assert (out / "model.bin").read_bytes() == b"new model"


def test_a_hard_link_to_a_symlink_is_that_symlink_under_its_own_name(
    tmp_path: Path, out: Path
) -> None:
    link_to_link: list[tuple[str, bytes | str | None, int]] = [
        ("w.bin", b"weights", tarfile.REGTYPE),
        ("m/current", "../w.bin", tarfile.SYMTYPE),
        ("m/also", "m/current", tarfile.LNKTYPE),  # named from the root,
    ]
    archive = tar_gz(tmp_path / "m.tar.gz", link_to_link)
    assert unpack(archive, Layout.TAR_GZ, out) == 3
    assert os.readlink(out / "m" / "also") == "../w.bin"
    # The same text read from another folder leads elsewhere: checked as a symlink there.
    archive = tar_gz(
        tmp_path / "bad.tar.gz", [*link_to_link, ("top", "m/current", tarfile.LNKTYPE)]
    )
    with pytest.raises(UnsafeArchive, match=r"'top' points to '\.\./w\.bin', outside"):
        unpack(archive, Layout.TAR_GZ, tmp_path / "box" / "other")


def test_unpacking_a_tar_keeps_no_header_of_the_members_already_written(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tarfile keeps every header it reads: 200 000 members held 90 MiB."""
    header = tarfile.TarInfo("models/")
    header.type = tarfile.DIRTYPE
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(gzip.compress(header.tobuf() * 2000 + bytes(1024)))
    held = []
    real_next = tarfile.TarFile.next

    def next_member(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
        held.append(len(tar.members))
        return real_next(tar)

    monkeypatch.setattr(tarfile.TarFile, "next", next_member)
    unpack(archive, Layout.TAR_GZ, out)
    assert len(held) > 2000
    assert max(held) <= 1
