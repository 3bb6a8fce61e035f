"""``vigil-fetch URI --dest FOLDER``: the artifact init container's entry point.

Exit codes: 0 fetched (or already there), 1 a permanent failure, 75
transient errors outlasted the retries, 2 bad arguments, 70 a bug. The
last line of the log, also written to the termination message file
(``/dev/termination-log`` when it exists) for the operator to read from
the pod's status, says what happened in one line.
"""

from __future__ import annotations

import argparse
import decimal
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil.fetch.errors import FetchError, HttpStatusError, PermanentError
from vigil.fetch.s3 import (
    Addressing,
    S3Object,
    S3Settings,
    describe_error,
    listing_params,
    parse_listing,
    relative_key,
    settings_from_environment,
)
from vigil.fetch.transfer import (
    Connection,
    Downloaded,
    Progress,
    Request,
    RequestFactory,
    RetryPolicy,
    check_room,
    default_ssl_context,
    describe_status,
    download,
    local_write_error,
    log,
)
from vigil.fetch.unpack import Room, unpack
from vigil.fetch.uri import ArtifactUri, Layout, Scheme, parse_uri, shown_uri

EXIT_BUG = 70
TERMINATION_LOG = "/dev/termination-log"
#: Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_BYTES = 4096
#: Written last into the folder: what is there, so a restarted init container skips the work.
MARKER = ".vigil-fetch.json"
WORK = ".vigil-fetch"
#: Said of a 403 AccessDenied for one object: S3 answers so for a missing key too.
_ACCESS_DENIED_HINT = (
    " (or no such key: S3 answers 403, not 404, for a key that does not exist when the"
    " keys may not list the bucket, s3:ListBucket)"
)


@dataclass(frozen=True)
class Options:
    uri: ArtifactUri
    dest: Path
    sha256: str | None
    retry: RetryPolicy
    connection: Connection
    s3: S3Settings | None
    progress_interval: float
    #: ``--size-limit``: the most the folder may hold, and as the spec says it.
    size_limit: tuple[int, str] | None = None


@dataclass(frozen=True)
class Fetched:
    files: int
    size: int
    sha256: str | None
    seconds: float
    skipped: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil-fetch",
        description="Download a model artifact (http, https, s3) into a folder.",
    )
    parser.add_argument("uri", help="http(s)://host/path, s3://bucket/key or s3://bucket/prefix/")
    parser.add_argument("--dest", required=True, type=Path, help="the folder to fill")
    parser.add_argument("--sha256", help="expected sha256 (hex) of the file or archive")
    parser.add_argument(
        "--size-limit",
        help="the most the folder may hold, a quantity (20Gi): what an archive unpacks to stops"
        " there (spec.model.fetch.sizeLimit)",
    )
    s3 = parser.add_argument_group("S3 (defaults from AWS_ENDPOINT_URL_S3, AWS_REGION ...)")
    s3.add_argument("--s3-endpoint", help="http(s)://host[:port] of an S3-compatible store")
    s3.add_argument("--s3-region", help="the signing region (default us-east-1)")
    s3.add_argument("--s3-addressing", choices=[a.value for a in Addressing])
    s3.add_argument(
        "--s3-credentials",
        type=Path,
        default=os.environ.get("VIGIL_S3_CREDENTIALS") or None,
        help="a folder with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY files (a Secret mount)",
    )
    parser.add_argument("--ca-file", help="trust only this CA bundle for https")
    parser.add_argument("--retries", type=int, default=5, help="retries of a transient error")
    parser.add_argument("--retry-base-seconds", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds of silence per read")
    parser.add_argument("--progress-interval", type=float, default=2.0)
    parser.add_argument("--termination-log", default=None, help=f"default {TERMINATION_LOG}")
    return parser


def options_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Options:
    uri = parse_uri(args.uri)
    s3 = None
    if uri.scheme is Scheme.S3:
        s3 = settings_from_environment(
            environ,
            endpoint=args.s3_endpoint,
            region=args.s3_region,
            addressing=Addressing(args.s3_addressing) if args.s3_addressing else None,
            credentials_dir=args.s3_credentials,
        )
    return Options(
        uri=uri,
        dest=args.dest,
        sha256=checked_sha256(args.sha256),
        retry=RetryPolicy(retries=args.retries, base_seconds=args.retry_base_seconds),
        connection=Connection(
            timeout_seconds=args.timeout, ssl_context=default_ssl_context(args.ca_file)
        ),
        s3=s3,
        progress_interval=args.progress_interval,
        size_limit=None
        if args.size_limit is None
        else (quantity(args.size_limit), args.size_limit),
    )


_QUANTITY = re.compile(r"\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?")
_FACTORS = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_FACTORS["m"] = decimal.Decimal("0.001")  # the CRD takes what Kubernetes does: "500m" too
_FACTORS |= {f"{k.upper()}i": 1 << (10 * (i + 1)) for i, k in enumerate("kMGTPE")}


def quantity(value: str) -> int:
    """Bytes of a Kubernetes quantity (``20Gi``, ``500M``, ``1e9``, ``1073741824``)."""
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise PermanentError(f"size limit {value!r} is not a quantity such as 20Gi")
    number, suffix = decimal.Decimal(match[1]), match[2] or ""
    if suffix in _FACTORS:  # before the exponent: "E" alone is exa, "Ei" exbi
        number *= _FACTORS[suffix]
    elif suffix:
        number *= decimal.Decimal(10) ** int(suffix[1:])
    return math.ceil(number)


def checked_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise PermanentError(f"sha256 {value!r} is not 64 hexadecimal digits")
    return digest


def fetch(options: Options) -> Fetched:
    """Fill ``options.dest`` with the artifact; raises :class:`FetchError`."""
    uri = options.uri
    if uri.scheme is Scheme.PVC:
        raise PermanentError("pvc:// artifacts are mounted by the operator, not fetched")
    if options.sha256 and uri.is_prefix:
        raise PermanentError("a sha256 needs one file or archive, not a prefix of objects")
    dest = options.dest
    marker = {"uri": uri.raw, "sha256": options.sha256}
    previous = _read_marker(dest)
    if previous is not None and {k: previous.get(k) for k in marker} == marker:
        return Fetched(previous["files"], previous["size"], previous["sha256"], 0.0, skipped=True)
    started = time.monotonic()
    work = dest / WORK
    try:
        shutil.rmtree(work, ignore_errors=True)
        (work / "download").mkdir(parents=True)
    except OSError as error:
        raise PermanentError(f"cannot use {dest}: {error.strerror}") from None
    try:
        size, digest, layout = _download_all(options, work / "download")
        if options.sha256 and digest != options.sha256:
            raise PermanentError(f"sha256 mismatch: expected {options.sha256}, got {digest}")
        files = _lay_down(uri.file_name, layout, work, previous is not None, options.size_limit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = Fetched(files, size, digest, time.monotonic() - started)
    marker |= {"files": files, "size": size, "sha256": digest}
    try:
        (dest / MARKER).write_text(json.dumps(marker))
    except OSError as error:  # a full disk, or something in its way
        raise local_write_error(error, dest / MARKER, 0) from None
    return result


def _read_marker(dest: Path) -> dict[str, object] | None:
    try:
        loaded = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _get(
    options: Options,
    make_request: RequestFactory,
    target: Path,
    progress: Progress,
    *,
    sha256: bool = False,
    expected_size: int | None = None,
) -> Downloaded:
    """One GET with the options' retries and TLS; an S3 store's errors in its own words."""
    return download(
        make_request,
        target,
        progress=progress,
        retry=options.retry,
        connection=options.connection,
        describe=describe_status if options.s3 is None else describe_error,
        sha256=sha256,
        # A store redirects only to say "wrong region": that is an error to show.
        follow_redirects=options.s3 is None,
        expected_size=expected_size,
    )


def _download_all(options: Options, folder: Path) -> tuple[int, str | None, Layout]:
    """Every object into ``folder``: one file, or each object under an S3 prefix. Returns
    the bytes, the sha256 when asked for, and how they land: a key that turns out to be a
    "folder" of objects lands as they are, whatever its name's suffix says."""
    uri = options.uri
    progress = Progress(interval=options.progress_interval)
    hashed = options.sha256 is not None
    if options.s3 is None:
        request = Request(url=uri.location)
        done = _get(options, lambda: request, folder / uri.file_name, progress, sha256=hashed)
        progress.report()
        return done.size, done.sha256, uri.layout
    s3 = options.s3
    bucket = uri.location
    if uri.is_prefix:
        prefix = uri.path
        objects = _list(options, bucket, prefix, folder)
    else:
        try:
            done = _get(
                options,
                lambda: s3.request(bucket, uri.path),
                folder / uri.file_name,
                progress,
                sha256=hashed,
            )
            progress.report()
            return done.size, done.sha256, uri.layout
        except HttpStatusError as error:
            if error.status == 403 and "AccessDenied" in str(error):
                raise HttpStatusError(f"{error}{_ACCESS_DENIED_HINT}", error.status) from None
            # No such object: the key may name a "folder" of objects.
            if error.status != 404:
                raise
            prefix = uri.path + "/"
            try:
                objects = _list(options, bucket, prefix, folder)
            except HttpStatusError as refused:
                # Keys that may read objects but not list them: the object's absence is news.
                raise HttpStatusError(
                    f"{error} (and listing s3://{bucket}/{prefix} as a folder: {refused})",
                    error.status,
                ) from None
            if not objects:
                raise
            if hashed:
                raise PermanentError(
                    "a sha256 needs one file or archive, but this key is a prefix of objects"
                ) from None
    if not objects:
        raise PermanentError(f"no objects under s3://{bucket}/{prefix}")
    total = sum(o.size for o in objects)
    check_room(folder, total, f"{len(objects)} objects")
    progress.set_total(total)
    for obj in objects:
        target = folder / relative_key(obj.key, prefix)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # keys "a" and "a/b": a store allows both, a folder not
            raise local_write_error(error, target, 0).about(f"object {obj.key}") from None
        try:
            _get(
                options,
                lambda key=obj.key: s3.request(bucket, key),
                target,
                progress,
                expected_size=obj.size,
            )
        except FetchError as error:
            raise error.about(f"object {obj.key}") from None
    progress.report()
    return total, None, Layout.FILE


def _list(options: Options, bucket: str, prefix: str, folder: Path) -> list[S3Object]:
    """Every object under ``prefix`` (ListObjectsV2, page by page)."""
    assert options.s3 is not None
    s3 = options.s3
    page_file = folder.parent / "listing.xml"
    objects: list[S3Object] = []
    token: str | None = None
    while True:
        params = listing_params(prefix, token)
        _get(
            options,
            lambda params=params: s3.request(bucket, "", params),
            page_file,
            Progress(interval=float("inf")),
        )
        page = parse_listing(page_file.read_bytes())
        objects.extend(page.objects)
        if page.next_token is None:
            return objects
        if page.next_token == token:
            raise PermanentError(f"the store listed s3://{bucket}/{prefix} with a page loop")
        token = page.next_token


def _lay_down(
    name: str, layout: Layout, work: Path, replace: bool, size_limit: tuple[int, str] | None
) -> int:
    """Unpack an archive (``name``, downloaded), then move everything from the work area
    into the folder."""
    downloaded = work / "download"
    staged = downloaded
    if layout is not Layout.FILE:
        staged = work / "unpacked"
        archive = downloaded / name
        files = unpack(archive, layout, staged, _room(work.parent, size_limit))
        archive.unlink()
    else:
        files = sum(1 for p in staged.rglob("*") if not p.is_dir())
    dest = work.parent
    reserved = sorted(entry.name for entry in staged.iterdir() if entry.name in (WORK, MARKER))
    if reserved:
        # The folder's own: moved in, one would delete the work area under the fetch,
        # the other be overwritten by the marker.
        raise PermanentError(
            f"the artifact holds {' and '.join(map(repr, reserved))} at its top, a name"
            " vigil-fetch keeps for its own use in the model's folder: rename it"
        )
    _move_in(staged, dest, replace)
    return files


def _move_in(staged: Path, dest: Path, replace: bool) -> None:
    """Move the staged entries into the folder, over those of their names; a failure (a
    full disk, a busy mount) is a local write error, in the words other writes get."""
    target = dest
    try:
        if replace:
            # The folder held another artifact of ours (its marker said so): clear it.
            for target in dest.iterdir():
                if target.name != WORK:
                    _remove_entry(target)
        for entry in staged.iterdir():
            target = dest / entry.name
            _remove_entry(target)
            os.replace(entry, target)
    except OSError as error:
        raise local_write_error(error, target, 0) from None


def _room(dest: Path, size_limit: tuple[int, str] | None) -> Room:
    """What an archive may unpack to: the disk's free bytes, or less under a size limit
    (the kubelet measures the whole folder, the archive and any earlier model in it)."""
    room = Room.free(dest)
    if size_limit is None:
        return room
    limit, words = size_limit
    used = sum(p.lstat().st_size for p in dest.rglob("*") if not p.is_dir())
    if limit - used >= room.most:
        return room
    return Room(
        max(limit - used, 0),
        f"past the folder's size limit of {words} ({used} bytes in it already, the archive's"
        " included; spec.model.fetch.sizeLimit)",
    )


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_termination_message(message: str, path: str | None) -> None:
    """The pod status's ``terminated.message``: the file exists in a container; else skipped."""
    target = path or TERMINATION_LOG
    if path is None and not os.path.exists(target):
        return
    # A path may hold bytes that are no UTF-8 (an archive member's name): shown escaped.
    kept = message.encode(errors="backslashreplace")[:TERMINATION_MESSAGE_BYTES]
    data = kept.decode(errors="ignore")
    try:
        with open(target, "w") as out:
            out.write(data)
    except OSError as error:
        log(f"cannot write the termination message to {target}: {error.strerror}")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    uri = shown_uri(args.uri)
    try:
        options = options_from(args, os.environ)
        log(f"fetching {uri} into {options.dest}")
        result = fetch(options)
    except FetchError as error:
        message = f"{uri}: {error}"
        log(message)
        write_termination_message(message, args.termination_log)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        # The frames, never the words: an exception's text may quote a header (a key, a
        # token) or a URL's signature, and the message goes to the pod's status and Events.
        log(f"internal error: {type(error).__name__}, raised at (its text left out):")
        traceback.print_tb(error.__traceback__)
        message = f"{uri}: internal error: {type(error).__name__} (a bug; the log has where)"
        log(message)
        write_termination_message(message, args.termination_log)
        return EXIT_BUG
    if result.skipped:
        summary = f"{uri}: already in {args.dest} ({_files(result.files)}, {result.size} bytes)"
    else:
        seconds = time.monotonic() - started
        rate = result.size / max(seconds, 1e-9) / 1e6
        summary = (
            f"{uri}: fetched {_files(result.files)}, {result.size} bytes into {args.dest}"
            f" in {seconds:.1f} s ({rate:.1f} MB/s)"
        )
    if result.sha256:
        summary += f", sha256 {result.sha256}"
    log(summary)
    write_termination_message(summary, args.termination_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
