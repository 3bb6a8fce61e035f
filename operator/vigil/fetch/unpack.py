"""Unpack a ``.tar.gz`` or ``.zip`` into a folder, refusing anything that would escape it.

Refused: absolute names, ``..`` components, device files and FIFOs, and
links (symbolic or hard) whose target resolves outside the folder. Members
are written in archive order, the last of a name winning as with GNU tar
(an archive updated with ``tar -r``); hard links are copies made where
they occur. Symbolic links alone wait for the end: while files are written
no symlink exists on disk, so no write can be redirected through one; each
is then checked against what is really on disk before it is made.
Modes keep only the owner's execute bit and the usual read bits (no setuid,
no group or world write), as tarfile's ``data`` filter does. What an archive
unpacks to is bounded by the room left (free disk, or a size limit): sizes
its headers declare and bytes really written both count, hard links as the
copies they become, in blocks as a file system takes them: a file its size
rounded up to 4 KiB, and an empty file, a folder (made for a member or as a
parent of one) or a link one block each.

Memory stays bounded whatever the archive holds: at most ``MAX_MEMBERS``
members; tar headers that tarfile reads whole (GNU long names and links, pax
records, sparse maps) are capped before they are read; a zip's central
directory, which zipfile reads whole and keeps an object per entry of, is
measured before zipfile opens it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vigil.fetch.errors import PermanentError
from vigil.fetch.transfer import BUFFER_BYTES, free_bytes, local_write_error
from vigil.fetch.uri import Layout

#: Longer names are refused outright (resolving very long paths is where
#: path checks have failed before).
MAX_NAME_BYTES = 1024

#: The most members (files, folders, links) an archive may have. zipfile keeps an object
#: of some 600 bytes per entry (100 000: about 60 MiB of the 256 MiB default limit);
#: symlinks wait in memory until the end.
MAX_MEMBERS = 100_000

#: zipfile reads a zip's central directory whole, and keeps each entry's name and
#: extra fields again: 100 000 entries with 300-byte names take some 35 MB.
MAX_ZIP_DIRECTORY_BYTES = 32 << 20

#: The most tar header data held at once for one member (GNU long names and links,
#: pax records, a sparse map) and for the archive's global pax headers: tarfile
#: reads each whole into memory before anything can look at it.
MAX_HEADER_BYTES = 1 << 20

#: What any member takes on disk at the least: an empty file, a folder or a link
#: declares no size and still takes a block (50 000 folders took 200 MB).
BLOCK_BYTES = 4096

#: What may follow a tar archive's end inside its gzip stream: tar pads to its record
#: size (10 KiB by default); zeros beyond that would only cost time to read.
MAX_TRAILING_BYTES = 1 << 20


class UnsafeArchive(PermanentError):
    """The archive tried to put something outside its folder."""


@dataclass(frozen=True)
class _Link:
    name: str
    target: str
    hard: bool


@dataclass(frozen=True)
class Room:
    """The most bytes an archive may unpack to, and what bounds them."""

    most: int
    #: Ends the message "NAME unpacks to more than MOST bytes, ...".
    why: str
    #: Said as a full disk ("no space left on device"), the words a full disk gets elsewhere.
    disk: bool = False

    @classmethod
    def free(cls, folder: Path) -> Room:
        free = free_bytes(folder)
        return cls(free, f"{free} bytes free in {folder}", disk=True)


class _Budget:
    """Running totals of the sizes members declare and of the bytes really written:
    a header may lie, and writing stops before the room is gone, not after."""

    def __init__(self, archive: Path, room: Room) -> None:
        self._archive = archive
        self._room = room
        self._declared = 0
        self._written = 0

    def declare(self, size: int) -> None:
        """A file of ``size`` bytes: whole blocks, one at the least."""
        self._declared += max(-(-size // BLOCK_BYTES), 1) * BLOCK_BYTES
        self._check(self._declared)

    def entry(self) -> None:
        """A folder or a link: one block."""
        self.declare(0)

    def wrote(self, count: int) -> None:
        self._written += count
        self._check(self._written)

    def _check(self, total: int) -> None:
        room = self._room
        if total > room.most:
            raise PermanentError(
                ("no space left on device: " if room.disk else "")
                + f"{self._archive.name} unpacks to more than {room.most} bytes, {room.why}"
            )


def unpack(archive: Path, layout: Layout, folder: Path, room: Room | None = None) -> int:
    """Unpack into ``folder`` (created), in ``room`` (default: the disk's free bytes);
    returns the number of files written."""
    folder.mkdir(parents=True, exist_ok=True)
    budget = _Budget(archive, room or Room.free(folder))
    try:
        if layout is Layout.TAR_GZ:
            return _unpack_tar(archive, folder, budget)
        if layout is Layout.ZIP:
            return _unpack_zip(archive, folder, budget)
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        gzip.BadGzipFile,
        zlib.error,
        EOFError,
        NotImplementedError,  # a zip compression Python cannot read (deflate64, zstd)
        RuntimeError,  # an encrypted zip
    ) as error:
        raise PermanentError(
            f"{archive.name} is not a readable {layout} archive: {error}"
        ) from None
    except OSError as error:  # a member whose path clashes with another's, or a full disk
        raise local_write_error(error, Path(error.filename or folder), 0) from None
    raise ValueError(f"not an archive layout: {layout}")


def _too_many(archive: Path) -> UnsafeArchive:
    return UnsafeArchive(
        f"{archive.name} holds more than {MAX_MEMBERS} members (files, folders and links),"
        " the most vigil-fetch unpacks"
    )


def _name_bytes(name: str) -> int:
    """The length of a name as the file system gets it. tarfile hands over bytes that are
    no UTF-8 (names from a Latin-1 system) as surrogates; they go to disk as they were."""
    return len(os.fsencode(name))


def checked_name(name: str) -> str:
    """The member's path relative to the folder; raises for one that would leave it."""
    if _name_bytes(name) > MAX_NAME_BYTES:
        raise UnsafeArchive(f"archive member name longer than {MAX_NAME_BYTES} bytes")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"archive member {name!r} escapes the destination folder")
    if "\0" in name:
        raise UnsafeArchive(f"archive member {name!r} has a NUL in its name")
    return "/".join(parts)


def _inside(folder: Path, path: str) -> bool:
    root = os.path.realpath(folder)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _safe_mode(mode: int) -> int:
    executable = mode & stat.S_IXUSR
    return 0o755 if executable else 0o644


def _make_folder(path: Path, budget: _Budget) -> None:
    """Make a folder and its missing parents, a block charged for each one made."""
    missing = 0
    existing = path
    while not existing.is_dir():  # stops at the archive's folder, made first
        missing += 1
        existing = existing.parent
    if missing:
        for _ in range(missing):
            budget.entry()
        path.mkdir(parents=True, exist_ok=True)


def _write_file(
    folder: Path, name: str, source: IO[bytes], mode: int, size: int, budget: _Budget
) -> int:
    """Write a regular file (over one of that name); returns 1 for a new name."""
    budget.declare(size)
    path = folder / name
    _make_folder(path.parent, budget)
    if path.is_dir() and not path.is_symlink():
        raise UnsafeArchive(f"archive member {name!r} replaces a folder with a file")
    new = not os.path.lexists(path)
    written = 0
    try:
        with open(path, "wb") as out:
            while chunk := source.read(BUFFER_BYTES):
                budget.wrote(len(chunk))
                out.write(chunk)
                written += len(chunk)
    except OSError as error:
        raise local_write_error(error, path, written) from None
    os.chmod(path, _safe_mode(mode))
    return int(new)


def _link(name: str, target: str, *, hard: bool) -> _Link:
    """A link met in the archive; refuses a target no file system takes."""
    if _name_bytes(target) > MAX_NAME_BYTES:
        raise UnsafeArchive(f"archive link {name!r} has a target over 1024 bytes")
    if "\0" in target:  # os.path and os.symlink would raise ValueError
        raise UnsafeArchive(f"archive link {name!r} has a NUL in its target")
    return _Link(name, target, hard)


class _PendingLinks:
    """Symbolic links to make once every file is written, the last of a name winning.

    Memory grows with the number of symlinks only, not with the archive's members.
    Each is charged its block as it is met."""

    def __init__(self, budget: _Budget) -> None:
        self._links: dict[str, _Link] = {}
        self._budget = budget

    def add(self, link: _Link) -> None:
        self._budget.entry()
        self._links.pop(link.name, None)  # re-inserted: made in the later one's place
        self._links[link.name] = link

    def drop(self, name: str) -> None:
        """A later file or folder of that name replaces the link."""
        self._links.pop(name, None)

    def get(self, name: str) -> _Link | None:
        return self._links.get(name)

    def __iter__(self) -> Iterator[_Link]:
        return iter(list(self._links.values()))


def _link_path(folder: Path, link: _Link, budget: _Budget) -> Path:
    """Where a link goes, its folder made; refuses one outside or in a folder's place."""
    path = folder / link.name
    if not _inside(folder, os.path.realpath(path.parent)):
        raise UnsafeArchive(f"archive link {link.name!r} lies outside the destination folder")
    _make_folder(path.parent, budget)
    if path.is_dir() and not path.is_symlink():
        raise UnsafeArchive(f"archive link {link.name!r} replaces a folder")
    return path


def _hard_link(folder: Path, link: _Link, pending: _PendingLinks, budget: _Budget) -> int:
    """Copy a hard link's target as it is at this point of the archive; returns 1 for a
    new name. No symlink is on disk yet, so the target is read where the archive put it."""
    target = checked_name(link.target)
    symlink = pending.get(target)
    if symlink is not None:
        # A hard link to a symlink is that symlink under another name, as tar makes it.
        pending.add(_Link(link.name, symlink.target, hard=False))
        return 0
    pending.drop(link.name)
    path = _link_path(folder, link, budget)
    source = folder / target
    if not _inside(folder, str(source)) or not source.is_file():
        raise UnsafeArchive(
            f"archive hard link {link.name!r} points to {link.target!r},"
            " which is not a file inside the destination folder"
        )
    if source == path:
        return 0  # a link to itself: the file as it is
    # A copy: it takes its room again.
    size = source.stat().st_size
    budget.declare(size)
    budget.wrote(size)
    new = not os.path.lexists(path)
    _remove(path)
    shutil.copyfile(source, path)
    return int(new)


def _make_symlinks(folder: Path, pending: _PendingLinks, budget: _Budget) -> int:
    """Make the symlinks, each checked on disk; returns how many names they add."""
    made = 0
    for link in pending:
        path = _link_path(folder, link, budget)
        if os.path.isabs(link.target):
            raise UnsafeArchive(
                f"archive symlink {link.name!r} points to the absolute path {link.target!r}"
            )
        if not _inside(folder, os.path.join(os.path.realpath(path.parent), link.target)):
            raise UnsafeArchive(
                f"archive symlink {link.name!r} points to {link.target!r},"
                " outside the destination folder"
            )
        # Read as text too: the folder is a work area moved into place afterwards, so a
        # target above the archive's root that lands inside the work area is refused.
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(link.name), link.target))
        if lexical == ".." or lexical.startswith("../"):
            raise UnsafeArchive(
                f"archive symlink {link.name!r} points to {link.target!r}, above the archive's root"
            )
        made += not os.path.lexists(path)
        _remove(path)
        os.symlink(link.target, path)
    # A later link can change where an earlier one leads ("a -> b/.." then
    # "b -> ."): only the final state counts, so every link is checked again.
    for link in pending:
        if not _inside(folder, str(folder / link.name)):
            raise UnsafeArchive(
                f"archive link {link.name!r} leads outside the destination folder"
                " through other links"
            )
    return made


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()


_EXTENDED_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_GNU_LONG_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _CappedReads:
    """A stream whose reads stop at ``MAX_HEADER_BYTES``, refused before they are made;
    a read that ends short is a broken archive (tarfile would raise IndexError)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._left = MAX_HEADER_BYTES

    def read(self, size: int) -> bytes:
        if size > self._left:
            raise UnsafeArchive(
                f"archive member has a sparse map over {MAX_HEADER_BYTES >> 20} MiB"
            )
        self._left -= size
        data = self._stream.read(size)
        if len(data) < size:
            raise tarfile.ReadError("unexpected end of data in a sparse map")
        return data

    def tell(self) -> int:
        return self._stream.tell()


@contextlib.contextmanager
def _garbled_sparse_map() -> Iterator[None]:
    """A sparse map tarfile cannot read is a broken archive, not a crash."""
    try:
        yield
    except (IndexError, ValueError) as error:
        raise tarfile.ReadError(f"bad sparse map: {error}") from None


@contextlib.contextmanager
def _sparse_map_reads(tar: tarfile.TarFile) -> Iterator[None]:
    """The reads of a sparse map, capped; one garbled is a broken archive, not a crash."""
    stream = tar.fileobj
    tar.fileobj = _CappedReads(stream)  # type: ignore[assignment]
    try:
        with _garbled_sparse_map():
            yield
    finally:
        tar.fileobj = stream


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before tarfile reads them whole, headers over their cap. tarfile reads
    a long name, a pax header or a sparse map into memory inside next(): a 1.4 MB
    tar.gz declaring a 300 MiB name took 927 MiB before any name check could run."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _GNU_LONG_HEADERS + _EXTENDED_HEADERS:
            assert isinstance(tar, _BoundedTarFile)
            tar.charge(self)
        return super()._proc_member(tar)  # type: ignore[misc]

    def _proc_sparse(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        with _sparse_map_reads(tar):
            return super()._proc_sparse(tar)  # type: ignore[misc]

    def _proc_gnusparse_10(
        self, member: tarfile.TarInfo, pax_headers: dict[str, str], tar: tarfile.TarFile
    ) -> None:
        with _sparse_map_reads(tar):
            super()._proc_gnusparse_10(member, pax_headers, tar)  # type: ignore[misc]

    def _proc_gnusparse_01(self, member: tarfile.TarInfo, pax_headers: dict[str, str]) -> None:
        with _garbled_sparse_map():  # a map in a pax header: "GNU.sparse.map=abc"
            super()._proc_gnusparse_01(member, pax_headers)  # type: ignore[misc]


class _BoundedTarFile(tarfile.TarFile):
    """A TarFile holding its headers to ``MAX_HEADER_BYTES``: per member (a member's
    headers chain, each held while the next is read) and for all global pax headers
    (tarfile keeps their records to the end)."""

    tarinfo = _BoundedTarInfo
    member_header_bytes = 0
    global_header_bytes = 0

    def next(self) -> tarfile.TarInfo | None:
        self.member_header_bytes = 0
        return super().next()

    def charge(self, header: tarfile.TarInfo) -> None:
        """Count an extended header before it is read; refuse one past its cap."""
        if header.type in _GNU_LONG_HEADERS and header.size > MAX_NAME_BYTES + 1:
            # The name and its NUL: longer, the name check would refuse it anyway.
            what = "member name" if header.type == tarfile.GNUTYPE_LONGNAME else "link target"
            raise UnsafeArchive(f"archive {what} longer than {MAX_NAME_BYTES} bytes")
        if header.type == tarfile.XGLTYPE:
            self.global_header_bytes += header.size
            if self.global_header_bytes > MAX_HEADER_BYTES:
                raise UnsafeArchive(
                    f"archive has global pax headers over {MAX_HEADER_BYTES >> 20} MiB"
                )
            return
        self.member_header_bytes += header.size
        if self.member_header_bytes > MAX_HEADER_BYTES:
            raise UnsafeArchive(f"archive member has pax headers over {MAX_HEADER_BYTES >> 20} MiB")


def _unpack_tar(archive: Path, folder: Path, budget: _Budget) -> int:
    files = members = 0
    pending = _PendingLinks(budget)
    # Stream mode: one pass over the compressed data. tarfile stops at its end-of-archive
    # blocks and never checks gzip's length and CRC: the rest of the stream is read
    # below, so a file cut short or corrupted fails instead.
    with (
        gzip.open(archive, "rb") as compressed,
        _BoundedTarFile.open(fileobj=compressed, mode="r|") as tar,
    ):
        # next(), not iteration: tarfile keeps every header it has read (tar.members),
        # memory growing with the member count; each is let go once handled.
        while (member := tar.next()) is not None:
            tar.members.clear()
            members += 1
            if members > MAX_MEMBERS:
                raise _too_many(archive)
            files += _tar_member(tar, member, folder, pending, budget)
        trailing = 0
        while chunk := compressed.read(BUFFER_BYTES):
            trailing += len(chunk)
            if trailing > MAX_TRAILING_BYTES:
                raise PermanentError(
                    f"{archive.name}: more than {MAX_TRAILING_BYTES >> 20} MiB follows the end"
                    " of its tar archive inside the gzip stream"
                )
    return files + _make_symlinks(folder, pending, budget)


def _tar_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    folder: Path,
    pending: _PendingLinks,
    budget: _Budget,
) -> int:
    """Write one member (a symlink waits in ``pending``); returns the names it adds."""
    name = checked_name(member.name)
    if member.isdir():
        if name:
            pending.drop(name)
            _make_folder(folder / name, budget)
        return 0
    if member.isfile():
        source = tar.extractfile(member)
        assert source is not None  # a regular file always has data
        pending.drop(name)
        return _write_file(folder, name, source, member.mode, member.size, budget)
    if member.islnk():
        return _hard_link(folder, _link(name, member.linkname, hard=True), pending, budget)
    if member.issym():
        pending.add(_link(name, member.linkname, hard=False))
        return 0
    raise UnsafeArchive(f"archive member {member.name!r} is a device, FIFO or other special file")


#: A central directory entry (APPNOTE 4.3.12): 46 bytes, then its name, extra field and
#: comment, whose lengths are the three 16-bit fields at offset 28.
_ZIP_ENTRY_BYTES = 46
_ZIP_LENGTHS = struct.Struct("<3H")


def _check_zip_directory(archive: Path) -> None:
    """Refuse a zip whose central directory zipfile would hold too much of, before it
    reads it: zipfile reads it whole and keeps an object per entry (~600 bytes).
    The entries are counted, not taken from the end record, which may understate."""
    with open(archive, "rb") as file:
        # The end record as ZipFile reads it (ZIP64 included); None: not a zip, said later.
        end = zipfile._EndRecData(file)  # type: ignore[attr-defined]
        if not end:
            return
        size = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
        if size > MAX_ZIP_DIRECTORY_BYTES:
            raise UnsafeArchive(
                f"{archive.name} has a central directory (its list of members) over"
                f" {MAX_ZIP_DIRECTORY_BYTES} bytes, the most vigil-fetch reads"
            )
        start = end[zipfile._ECD_LOCATION] - size  # type: ignore[attr-defined]
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
            start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
        if start < 0:
            return  # ZipFile says "Bad offset for central directory"
        file.seek(start)
        directory = file.read(size)
    if _zip_entries(directory) > MAX_MEMBERS:
        raise _too_many(archive)


def _zip_entries(directory: bytes) -> int:
    """How many entries a central directory holds, counting no further than the cap."""
    entries = offset = 0
    while offset + _ZIP_ENTRY_BYTES <= len(directory) and entries <= MAX_MEMBERS:
        entries += 1
        offset += _ZIP_ENTRY_BYTES + sum(_ZIP_LENGTHS.unpack_from(directory, offset + 28))
    return entries


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo, int]]:
    for info in archive.infolist():
        yield info, info.external_attr >> 16


def _unpack_zip(archive: Path, folder: Path, budget: _Budget) -> int:
    files = 0
    pending = _PendingLinks(budget)
    _check_zip_directory(archive)
    with zipfile.ZipFile(archive) as zipped:
        for info, mode in _zip_members(zipped):
            name = checked_name(info.filename)
            if stat.S_ISLNK(mode):
                with zipped.open(info) as source:
                    target = source.read(MAX_NAME_BYTES + 1)
                pending.add(_link(name, target.decode(errors="replace"), hard=False))
            elif info.is_dir():
                if name:
                    pending.drop(name)
                    _make_folder(folder / name, budget)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                raise UnsafeArchive(
                    f"archive member {info.filename!r} is a device, FIFO or other special file"
                )
            else:
                pending.drop(name)
                with zipped.open(info) as source:
                    files += _write_file(folder, name, source, mode, info.file_size, budget)
    return files + _make_symlinks(folder, pending, budget)
