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

from vigil.fetch import unpack as unpack_module
from vigil.fetch.errors import PermanentError
from vigil.fetch.unpack import MAX_TRAILING_BYTES, Room, UnsafeArchive, checked_name, unpack
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


# -- headers tarfile would read whole into memory ------------------------------------------


def pax_header(kind: bytes, value_bytes: int) -> bytes:
    """A pax header of ``kind`` (extended or global) holding one record of about that size."""
    body = b" comment=" + b"x" * value_bytes + b"\n"
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))
    record = str(length).encode() + body
    header = tarfile.TarInfo("pax")
    header.type = kind
    header.size = len(record)
    padding = bytes(-len(record) % tarfile.BLOCKSIZE)
    return header.tobuf(format=tarfile.USTAR_FORMAT) + record + padding


def empty_file_header(name: str) -> bytes:
    return tarfile.TarInfo(name).tobuf(format=tarfile.USTAR_FORMAT)


def declared_header(kind: bytes, size: int) -> bytes:
    """A GNU long name or link, or a pax header, declaring ``size`` bytes it does not hold."""
    header = tarfile.TarInfo("././@LongLink")
    header.type = kind
    header.size = size
    return header.tobuf(format=tarfile.GNU_FORMAT)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (tarfile.GNUTYPE_LONGNAME, "archive member name longer than 1024 bytes"),
        (tarfile.GNUTYPE_LONGLINK, "archive link target longer than 1024 bytes"),
        (tarfile.XHDTYPE, "archive member has pax headers over 1 MiB"),
        (tarfile.XGLTYPE, "archive has global pax headers over 1 MiB"),
    ],
)
def test_a_header_declaring_more_than_its_cap_is_refused_before_it_is_read(
    tmp_path: Path, out: Path, kind: bytes, words: str
) -> None:
    """tarfile reads such a header whole: a 1.4 MB tar.gz declaring a 300 MiB name took
    927 MiB. This one declares 1 GiB and holds none of it: read, it would end short."""
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(gzip.compress(declared_header(kind, 1 << 30) + bytes(1024)))
    with pytest.raises(UnsafeArchive, match=words):
        unpack(archive, Layout.TAR_GZ, out)


def test_pax_headers_are_capped_together_for_a_member_and_for_the_whole_archive(
    tmp_path: Path, out: Path
) -> None:
    # Each header under the cap: tarfile holds a member's chain of headers at once, and
    # keeps every global header's records to the end.
    big = 600 * 1024
    chained = tmp_path / "chained.tar.gz"
    chained.write_bytes(
        gzip.compress(
            pax_header(tarfile.XHDTYPE, big) * 2 + empty_file_header("m.bin") + bytes(1024)
        )
    )
    with pytest.raises(UnsafeArchive, match="archive member has pax headers over 1 MiB"):
        unpack(chained, Layout.TAR_GZ, out)
    spread = tmp_path / "global.tar.gz"
    members = [pax_header(tarfile.XGLTYPE, big) + empty_file_header(f"{i}.bin") for i in "ab"]
    spread.write_bytes(gzip.compress(b"".join(members) + bytes(1024)))
    with pytest.raises(UnsafeArchive, match="archive has global pax headers over 1 MiB"):
        unpack(spread, Layout.TAR_GZ, tmp_path / "other")
    fits = tmp_path / "fits.tar.gz"
    fits.write_bytes(
        gzip.compress(pax_header(tarfile.XHDTYPE, big) + empty_file_header("m.bin") + bytes(1024))
    )
    assert unpack(fits, Layout.TAR_GZ, tmp_path / "third") == 1


def sparse_header(extension_blocks: int) -> bytes:
    """An old GNU sparse member followed by its map's extension blocks, each with more."""
    header = tarfile.TarInfo("sparse.bin")
    header.type = tarfile.GNUTYPE_SPARSE
    block = bytearray(header.tobuf(format=tarfile.GNU_FORMAT)[: tarfile.BLOCKSIZE])
    block[482] = 1  # an extension block follows
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    extension = bytearray(tarfile.BLOCKSIZE)
    for piece in range(21):
        extension[piece * 24 : piece * 24 + 24] = b"%011o\0%011o\0" % (piece * 2, 1)
    extension[504] = 1
    return bytes(block) + bytes(extension) * extension_blocks


@pytest.mark.parametrize(
    ("blocks", "error", "words"),
    [
        (2049, UnsafeArchive, "archive member has a sparse map over 1 MiB"),
        # tarfile raises IndexError at the end of the data: a crash, exit 70.
        (3, PermanentError, r"m\.tar\.gz is not a readable tar\.gz archive"),
    ],
    ids=["over the cap", "cut short"],
)
def test_a_sparse_map_over_its_cap_or_cut_short_is_refused(
    tmp_path: Path, out: Path, blocks: int, error: type[Exception], words: str
) -> None:
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(gzip.compress(sparse_header(blocks)))
    with pytest.raises(error, match=words):
        unpack(archive, Layout.TAR_GZ, out)


def test_a_garbled_pax_sparse_map_is_a_broken_archive_not_a_crash(
    tmp_path: Path, out: Path
) -> None:
    # tarfile's int() raised ValueError: "internal error (a bug)", exit 70.
    member = tarfile.TarInfo("sparse.bin")
    member.pax_headers = {"GNU.sparse.map": "abc,def"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(member, io.BytesIO(b""))
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(gzip.compress(buffer.getvalue()))
    with pytest.raises(PermanentError, match=r"m\.tar\.gz is not a readable tar\.gz archive"):
        unpack(archive, Layout.TAR_GZ, out)


# -- what members without a size take on disk ---------------------------------------------

ONE_MIB = Room(1 << 20, "past the folder's size limit of 1Mi")
#: 300 blocks of 4096 bytes: more than 1 MiB.
NO_SIZE_MEMBERS: dict[str, list[tuple[str, bytes | str | None, int]]] = {
    "folders": [(f"d{i}/", None, tarfile.DIRTYPE) for i in range(300)],
    "empty files": [(f"e{i}", b"", tarfile.REGTYPE) for i in range(300)],
    "symlinks": [(f"l{i}", "target", tarfile.SYMTYPE) for i in range(300)],
    # 150 files fit; each makes a folder too.
    "folders made for files": [(f"d{i}/e", b"", tarfile.REGTYPE) for i in range(150)],
}


@pytest.mark.parametrize("kind", NO_SIZE_MEMBERS)
def test_members_without_a_size_take_a_block_each_of_the_room(
    tmp_path: Path, out: Path, kind: str
) -> None:
    """50 000 folders declare no size and took 200 MB of disk under a 1 MiB limit."""
    archive = tar_gz(tmp_path / "m.tar.gz", NO_SIZE_MEMBERS[kind])
    with pytest.raises(PermanentError, match=r"m\.tar\.gz unpacks to more than 1048576 bytes"):
        unpack(archive, Layout.TAR_GZ, out, ONE_MIB)
    fewer = tar_gz(tmp_path / "fewer.tar.gz", NO_SIZE_MEMBERS[kind][:100])
    unpack(fewer, Layout.TAR_GZ, tmp_path / "other", ONE_MIB)  # a third as many fit


@pytest.mark.parametrize(
    ("kind", "data", "mode"),
    [
        ("d{}/", b"", stat.S_IFDIR | 0o755),
        ("e{}", b"", stat.S_IFREG | 0o644),
        ("l{}", b"target", stat.S_IFLNK | 0o777),
    ],
    ids=["folders", "empty files", "symlinks"],
)
def test_zip_members_without_a_size_take_a_block_each_of_the_room(
    tmp_path: Path, out: Path, kind: str, data: bytes, mode: int
) -> None:
    archive = zip_file(tmp_path / "m.zip", [(kind.format(i), data, mode) for i in range(300)])
    with pytest.raises(PermanentError, match=r"m\.zip unpacks to more than 1048576 bytes"):
        unpack(archive, Layout.ZIP, out, ONE_MIB)


def test_a_file_takes_its_size_in_whole_blocks(tmp_path: Path, out: Path) -> None:
    # 200 files of one byte: 800 KiB on disk, not 200 bytes.
    archive = tar_gz(tmp_path / "m.tar.gz", [(f"f{i}", b"x", tarfile.REGTYPE) for i in range(200)])
    with pytest.raises(PermanentError, match=r"unpacks to more than 524288 bytes"):
        unpack(archive, Layout.TAR_GZ, out, Room(512 << 10, "past the limit"))


# -- how many members an archive may have ---------------------------------------------------


def test_a_tar_of_more_members_than_the_cap_is_refused(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unpack_module, "MAX_MEMBERS", 3)
    members: list[tuple[str, bytes | str | None, int]] = [
        (f"f{i}", b"x", tarfile.REGTYPE) for i in range(4)
    ]
    archive = tar_gz(tmp_path / "m.tar.gz", members)
    with pytest.raises(UnsafeArchive, match=r"m\.tar\.gz holds more than 3 members"):
        unpack(archive, Layout.TAR_GZ, out)
    three = tar_gz(tmp_path / "three.tar.gz", members[:3])
    assert unpack(three, Layout.TAR_GZ, tmp_path / "other") == 3


def say_count(data: bytes, count: int) -> bytes:
    """The zip with its end record stating ``count`` entries."""
    end = data.rindex(b"PK\x05\x06")
    stated = count.to_bytes(2, "little") * 2  # on this disk, and in all
    return data[: end + 8] + stated + data[end + 12 :]


@pytest.mark.parametrize("stated", [4, 1], ids=["stated", "understated"])
def test_a_zip_of_more_entries_than_the_cap_is_refused_before_zipfile_reads_them(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, stated: int
) -> None:
    """zipfile keeps an object per entry of the central directory, 600 bytes each, before
    anything is checked: 450 000 empty entries, a 40 MB zip, outgrew 256 MiB."""
    archive = zip_file(tmp_path / "m.zip", [(f"f{i}", b"", 0o100644) for i in range(4)])
    archive.write_bytes(say_count(archive.read_bytes(), stated))
    monkeypatch.setattr(unpack_module, "MAX_MEMBERS", 3)

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("zipfile read the central directory")

    monkeypatch.setattr(zipfile, "ZipFile", never)
    with pytest.raises(UnsafeArchive, match=r"m\.zip holds more than 3 members"):
        unpack(archive, Layout.ZIP, out)


def test_a_zip_whose_central_directory_is_over_its_cap_is_refused(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_file(tmp_path / "m.zip", [("x" * 200, b"", 0o100644)])
    monkeypatch.setattr(unpack_module, "MAX_ZIP_DIRECTORY_BYTES", 200)
    with pytest.raises(
        UnsafeArchive,
        match=r"m\.zip has a central directory \(its list of members\) over 200 bytes",
    ):
        unpack(archive, Layout.ZIP, out)
    monkeypatch.setattr(unpack_module, "MAX_ZIP_DIRECTORY_BYTES", 400)
    assert unpack(archive, Layout.ZIP, out) == 1


# -- NUL bytes ----------------------------------------------------------------------------


def test_a_link_target_holding_a_nul_is_refused(tmp_path: Path, out: Path) -> None:
    zipped = zip_file(tmp_path / "m.zip", [("link", b"a\0b", stat.S_IFLNK | 0o777)])
    with pytest.raises(UnsafeArchive, match=r"archive link 'link' has a NUL in its target"):
        unpack(zipped, Layout.ZIP, out)
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.pax_headers = {"linkpath": "a\0b"}
        tar.addfile(info)
    with pytest.raises(UnsafeArchive, match=r"archive link 'link' has a NUL in its target"):
        unpack(archive, Layout.TAR_GZ, tmp_path / "other")
