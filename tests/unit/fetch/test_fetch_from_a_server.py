"""The entry point against a local server: what its messages show, and odd bodies and URLs."""

from __future__ import annotations

import errno
import io
import os
import re
import socket
import struct
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from vigil.fetch import main as fetch_main
from vigil.fetch.errors import EXIT_PERMANENT, EXIT_TRANSIENT, PermanentError
from vigil.fetch.main import MARKER
from vigil.fetch.sigv4 import uri_encode
from vigil.fetch.transfer import _redirect_target

DATA = bytes(range(256)) * 4096  # 1 MiB
Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Server:
    """Answers each path with its route (404 otherwise); remembers the paths asked for."""

    routes: dict[str, Route] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.asked.append(self.path)
            route = state.routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            route(self)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = http.server_address[1]
    # shutdown() waits out a poll: 0.5 s by default.
    threading.Thread(target=http.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


def send(data: bytes, *, status: int = 200, length: bool = True) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)
        handler.close_connection = True

    return route


@dataclass(frozen=True)
class Run:
    code: int
    message: str
    log: str
    dest: Path


@pytest.fixture
def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("VIGIL_S3_CREDENTIALS", raising=False)

    def fetch(uri: str, *args: str) -> Run:
        dest, termination = tmp_path / "model", tmp_path / "termination-log"
        retries = ["--retries", "1", "--retry-base-seconds", "0.01"]
        code = fetch_main.main(
            [uri, "--dest", str(dest), "--termination-log", str(termination), *retries, *args]
        )
        captured = capsys.readouterr()
        return Run(code, termination.read_text(), captured.out + captured.err, dest)

    return fetch


@pytest.mark.parametrize("token", ["SESSIONTOKEN\nMORE", "SESSIONTOKEN€MORE"])
def test_a_credential_http_cannot_carry_fails_permanently_without_being_shown(
    server: Server, run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRETKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    done = run("s3://models/wine/model.bin", "--s3-endpoint", server.url(""))
    assert done.code == EXIT_PERMANENT
    assert "x-amz-security-token header" in done.message
    for secret in ("SESSIONTOKEN", "MORE", "SECRETKEY"):
        assert secret not in done.message
        assert secret not in done.log
    assert server.asked == []  # nothing was sent


def test_a_bug_is_reported_by_its_type_never_its_words(
    run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "".join(["SESSION", "TOKEN"])  # a value at run time, not in a source line

    def broken(_options: object) -> None:
        raise RuntimeError(f"Invalid header value b'{token}'")

    monkeypatch.setattr(fetch_main, "fetch", broken)
    done = run("https://models.example/wine/model.bin")
    assert done.code == fetch_main.EXIT_BUG
    assert "internal error: RuntimeError" in done.message
    assert "SESSIONTOKEN" not in done.message
    assert "SESSIONTOKEN" not in done.log
    assert "line" in done.log  # the traceback's frames are still there


def test_a_presigned_url_s_query_is_never_shown(server: Server, run: Callable[..., Run]) -> None:
    query = "?X-Amz-Signature=SIGNATURE&X-Amz-Security-Token=TOKEN"
    done = run(server.url("/wine/missing.bin") + query)
    assert done.code == EXIT_PERMANENT
    assert done.message == server.url("/wine/missing.bin") + "?…: 404 Not Found"
    assert "SIGNATURE" not in done.log and "TOKEN" not in done.log
    assert server.asked == ["/wine/missing.bin" + query]  # sent as it is


def test_a_user_and_password_in_the_uri_are_refused_and_never_shown(
    run: Callable[..., Run],
) -> None:
    done = run("https://reader:PASSWORD@models.example/wine/model.bin")
    assert done.code == EXIT_PERMANENT
    assert done.message.startswith("https://models.example/wine/model.bin: credentials in the URI")
    assert "PASSWORD" not in done.log and "reader" not in done.log


def test_non_ascii_in_a_url_and_a_redirect_is_percent_encoded(
    server: Server, run: Callable[..., Run]
) -> None:
    def moved(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        # A server's raw UTF-8: http.client reads header bytes as Latin-1.
        handler.send_header("Location", "/neu/modèle.onnx".encode().decode("latin-1"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.routes["/caf%C3%A9/mod%C3%A8le.onnx"] = moved
    server.routes["/neu/mod%C3%A8le.onnx"] = send(DATA)
    done = run(server.url("/caf%C3%A9/modèle.onnx?v=é"))
    assert done.code == 0, done.message
    assert server.asked == ["/caf%C3%A9/mod%C3%A8le.onnx?v=%C3%A9", "/neu/mod%C3%A8le.onnx"]
    assert (done.dest / "modèle.onnx").read_bytes() == DATA


def test_a_body_ended_by_a_clean_close_is_kept_with_a_warning_its_size_is_unverified(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/m.bin"] = send(DATA, length=False)
    done = run(server.url("/m.bin"))
    assert done.code == 0, done.message
    assert (done.dest / "m.bin").read_bytes() == DATA
    assert "the size of m.bin could not be verified" in done.log
    assert "set sha256" in done.log


def test_a_body_without_a_length_cut_by_a_reset_is_fetched_again(
    server: Server, run: Callable[..., Run]
) -> None:
    attempts = []

    def cut_once(handler: BaseHTTPRequestHandler) -> None:
        attempts.append(1)
        if len(attempts) > 1:
            send(DATA, length=False)(handler)
            return
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(DATA[: len(DATA) // 2])
        handler.wfile.flush()
        # SO_LINGER 0: closing sends a reset, not the end of the stream (the server's own
        # shutdown() afterwards would send the end first).
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
        handler.close_connection = True

    server.routes["/m.bin"] = cut_once
    done = run(server.url("/m.bin"))
    assert done.code == 0, done.message
    assert len(attempts) == 2
    assert (done.dest / "m.bin").read_bytes() == DATA


def test_https_to_a_plain_http_port_fails_at_once_saying_so(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/m.bin"] = send(DATA)
    done = run(server.url("/m.bin").replace("http://", "https://"), "--retries", "3")
    assert done.code == EXIT_PERMANENT
    assert "WRONG_VERSION_NUMBER (does it speak https on that port?)" in done.message
    assert "gave up" not in done.message


def test_a_ca_file_that_holds_no_certificate_is_a_configuration_error(
    server: Server, run: Callable[..., Run], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    done = run(server.url("/m.bin").replace("http://", "https://"), "--ca-file", str(ca))
    assert done.code == EXIT_PERMANENT
    assert f"the CA file {ca} holds no usable PEM certificate" in done.message


def test_a_server_that_ignores_range_and_cuts_short_runs_out_of_retries(
    server: Server, run: Callable[..., Run]
) -> None:
    # Each attempt starts over at byte 0, cut at 100, then 60, then 100 ... bytes: none gets
    # further than the first, so three attempts (two retries) are all there is.
    attempts = []

    def cut_short(handler: BaseHTTPRequestHandler) -> None:
        attempts.append(1)
        if len(attempts) > 10:  # the whole body at last: a loop ends, and fails the test
            send(DATA)(handler)
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(DATA)))
        handler.end_headers()
        handler.wfile.write(DATA[: (100, 60)[len(attempts) % 2 == 0]])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    server.routes["/m.bin"] = cut_short
    done = run(server.url("/m.bin"), "--retries", "2")
    assert done.code != 0 and "gave up after 3 attempts in a row" in done.message
    assert len(attempts) == 3


def zeros_tar_gz(size: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return buffer.getvalue()


@pytest.mark.slow
def test_an_archive_unpacking_past_the_size_limit_fails_before_filling_the_folder(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/model.tar.gz"] = send(zeros_tar_gz(8 << 20))
    done = run(server.url("/model.tar.gz"), "--size-limit", "4Mi")
    assert done.code == EXIT_PERMANENT
    assert "model.tar.gz unpacks to more than" in done.message
    assert "size limit" in done.message
    assert sorted(p.name for p in done.dest.iterdir()) == []
    assert run(server.url("/model.tar.gz"), "--size-limit", "9Mi").code == 0


def s3_error(status: int, code: str) -> Route:
    body = f"<Error><Code>{code}</Code><Message>{code} says the store</Message></Error>"
    return send(body.encode(), status=status)


def test_a_missing_key_is_reported_missing_when_listing_it_as_a_folder_is_refused(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/models/wine/model.bin"] = s3_error(404, "NoSuchKey")
    server.routes["/models"] = s3_error(403, "AccessDenied")
    done = run("s3://models/wine/model.bin", "--s3-endpoint", server.url(""))
    assert done.code == EXIT_PERMANENT
    assert done.message.startswith("s3://models/wine/model.bin: 404 Not Found: NoSuchKey")
    assert "403 Forbidden: AccessDenied" in done.message


def cut_then_in_pieces(
    data: bytes, piece: int, *, length: bool = True, total: int | None = None
) -> Route:
    """The whole object cut half-way (with a Content-Length, else chunked), then each range
    answered with at most ``piece`` bytes (RFC 9110 lets a server send less than an
    open-ended range asks), its Content-Range stating ``total`` (default: the real size)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        asked = handler.headers.get("Range")
        if asked is None:
            half = data[: len(data) // 2]
            handler.send_response(200)
            if length:
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(half)
            else:
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        first = int(asked.removeprefix("bytes=").removesuffix("-"))
        last = min(first + piece, len(data)) - 1
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {first}-{last}/{total or len(data)}")
        handler.send_header("Content-Length", str(last - first + 1))
        handler.end_headers()
        handler.wfile.write(data[first : last + 1])

    return route


@pytest.mark.parametrize("length", [True, False], ids=["length announced", "chunked"])
def test_a_range_answered_in_pieces_is_asked_for_until_the_whole_object_is_there(
    server: Server, run: Callable[..., Run], length: bool
) -> None:
    # The size comes from the first answer's Content-Length, else from Content-Range's
    # complete length. Each whole piece is progress, not a failure: --retries is 1 here.
    # (A chunked body keeps only the buffers read whole before the cut: 4 MiB leaves one.)
    data = DATA * 4
    server.routes["/m.bin"] = cut_then_in_pieces(data, 700_000, length=length)
    done = run(server.url("/m.bin"))
    assert done.code == 0, done.message
    assert (done.dest / "m.bin").read_bytes() == data
    assert f"fetched 1 file, {len(data)} bytes" in done.message
    assert len(server.asked) >= 4  # the cut answer, then three pieces or more


def test_a_range_answer_stating_another_size_fails_saying_so(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/m.bin"] = cut_then_in_pieces(DATA, 100_000, total=len(DATA) + 1)
    done = run(server.url("/m.bin"))
    assert done.code == EXIT_PERMANENT
    assert re.search(
        rf"m\.bin: the size of m\.bin changed while it was fetched: {len(DATA)} bytes,"
        rf" then {len(DATA) + 1} \(Content-Range: bytes \d+-\d+/{len(DATA) + 1}\)$",
        done.message,
    ), done.message
    assert list(done.dest.iterdir()) == []


def replaced_while_fetched(old: bytes, new: bytes) -> Route:
    """``old`` (ETag "v1") cut half-way; then ``new``, of the same size, under ETag "v2",
    by a server that ignores If-Range: a range is answered from ``new``."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        asked = handler.headers.get("Range")
        if asked is None and not hasattr(handler.server, "cut"):
            handler.server.cut = True  # type: ignore[attr-defined]
            handler.send_response(200)
            handler.send_header("ETag", '"v1"')
            handler.send_header("Content-Length", str(len(old)))
            handler.end_headers()
            handler.wfile.write(old[: len(old) // 2])
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        first = int(asked.removeprefix("bytes=").removesuffix("-")) if asked else 0
        handler.send_response(206 if asked else 200)
        handler.send_header("ETag", '"v2"')
        if asked:
            handler.send_header("Content-Range", f"bytes {first}-{len(new) - 1}/{len(new)}")
        handler.send_header("Content-Length", str(len(new) - first))
        handler.end_headers()
        handler.wfile.write(new[first:])

    return route


def test_the_rest_of_a_replaced_object_is_not_joined_to_the_start_of_the_old_one(
    server: Server, run: Callable[..., Run]
) -> None:
    # A 206 of another ETag was appended: half of each version, "fetched" without a sha256.
    new = bytes(reversed(DATA))
    server.routes["/m.bin"] = replaced_while_fetched(DATA, new)
    done = run(server.url("/m.bin"), "--retries", "3")
    assert done.code == 0, done.message
    assert (done.dest / "m.bin").read_bytes() == new
    assert "m.bin changed while it was fetched" in done.log


def s3_listing(*keys: str) -> Route:
    contents = "".join(
        f"<Contents><Key>{escape(key)}</Key><Size>{len(DATA)}</Size></Contents>" for key in keys
    )
    body = (
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
    )
    return send(body.encode())


def test_an_object_under_a_prefix_the_keys_may_not_read_fails_in_the_store_s_words(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/models"] = s3_listing("wine/model.bin", "wine/secret.bin")
    server.routes["/models/wine/model.bin"] = send(DATA)
    server.routes["/models/wine/secret.bin"] = s3_error(403, "AccessDenied")
    done = run("s3://models/wine/", "--s3-endpoint", server.url(""))
    assert done.code == EXIT_PERMANENT
    assert done.message == (
        "s3://models/wine/: object wine/secret.bin: 403 Forbidden: AccessDenied:"
        " AccessDenied says the store"
    )


def test_objects_whose_keys_hold_blanks_are_fetched_under_those_names(
    server: Server, run: Callable[..., Run]
) -> None:
    names = ["a  b.bin", "v1 ", " lead.bin", "tab\there.bin"]
    server.routes["/models"] = s3_listing(*(f"wine/{name}" for name in names))
    for name in names:
        server.routes["/models/wine/" + uri_encode(name, keep_slash=True)] = send(DATA)
    done = run("s3://models/wine/", "--s3-endpoint", server.url(""))
    assert done.code == 0, done.message
    assert sorted(path.name for path in done.dest.iterdir()) == sorted([*names, MARKER])


@pytest.mark.parametrize("uri", ["http", "s3"])
def test_a_file_name_too_long_for_the_file_system_is_a_permanent_error_in_its_words(
    server: Server, run: Callable[..., Run], uri: str
) -> None:
    name = "weights-" + "x" * 300 + ".bin"  # most file systems take 255 bytes
    server.routes["/" + name] = send(DATA)
    server.routes["/models"] = s3_listing("wine/" + name)
    if uri == "http":
        done = run(server.url("/" + name))
    else:
        done = run("s3://models/wine/", "--s3-endpoint", server.url(""))
        assert f": object wine/{name}: " in done.message
    assert done.code == EXIT_PERMANENT
    assert re.search(rf": cannot write \S+/{name}: File name too long$", done.message)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redirect(location: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def test_a_failure_after_a_redirect_names_where_the_redirect_led(
    server: Server, run: Callable[..., Run]
) -> None:
    port = closed_port()
    server.routes["/m.bin"] = redirect(f"http://127.0.0.1:{port}/moved/m.bin")
    server.routes["/gone.bin"] = redirect("/missing.bin")
    done = run(server.url("/m.bin"))
    assert done.code == EXIT_TRANSIENT
    assert done.message == (
        f"{server.url('/m.bin')}: redirected to http://127.0.0.1:{port}/moved/m.bin: cannot"
        f" connect to 127.0.0.1:{port}: connection refused (gave up after 2 attempts in a row)"
    )
    done = run(server.url("/gone.bin"))
    assert done.code == EXIT_PERMANENT
    assert done.message.endswith(f": redirected to {server.url('/missing.bin')}: 404 Not Found")


def test_a_redirect_from_https_to_http_is_refused() -> None:
    with pytest.raises(PermanentError, match=r"redirected from https to http://store/m\.bin"):
        _redirect_target("https://store/m.bin", "http://store/m.bin")
    assert _redirect_target("http://store/m.bin", "https://store/m.bin") == "https://store/m.bin"


@pytest.mark.parametrize("scheme", ["ftp", "file"])
def test_a_redirect_to_a_url_that_is_not_http_fails_at_once_naming_it(
    server: Server, run: Callable[..., Run], scheme: str
) -> None:
    # A port nothing listens on: tried as HTTP, it would be refused and retried.
    location = f"{scheme}://127.0.0.1:{closed_port()}/m.bin"
    server.routes["/m.bin"] = redirect(location + "?token=SECRET")
    done = run(server.url("/m.bin"), "--retries", "3")
    assert done.code == EXIT_PERMANENT
    assert done.message == (
        f"{server.url('/m.bin')}: redirected to {location}?…, which is not an http(s):// URL"
    )
    assert "SECRET" not in done.log
    assert server.asked == ["/m.bin"]


def tar_gz_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("reserved", [".vigil-fetch/x", ".vigil-fetch.json"])
def test_an_artifact_holding_a_name_the_fetcher_keeps_is_refused_leaving_nothing(
    server: Server, run: Callable[..., Run], reserved: str
) -> None:
    server.routes["/model.tar.gz"] = send(tar_gz_of({reserved: b"{}", "model.bin": DATA}))
    done = run(server.url("/model.tar.gz"))
    assert done.code == EXIT_PERMANENT
    name = reserved.split("/")[0]
    assert done.message == (
        f"{server.url('/model.tar.gz')}: the artifact holds {name!r} at its top, a name"
        " vigil-fetch keeps for its own use in the model's folder: rename it"
    )
    assert list(done.dest.iterdir()) == []


def test_a_bucket_in_another_region_is_told_which_region_to_set(
    server: Server, run: Callable[..., Run]
) -> None:
    body = (
        b"<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to"
        b" access must be addressed using the specified endpoint.</Message>"
        b"<Endpoint>models.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>models</Bucket></Error>"
    )

    def moved(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(301)
        handler.send_header("x-amz-bucket-region", "eu-west-1")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.routes["/models/wine/model.bin"] = moved
    done = run("s3://models/wine/model.bin", "--s3-endpoint", server.url(""))
    assert done.code == EXIT_PERMANENT
    assert done.message.startswith("s3://models/wine/model.bin: 301 Moved Permanently: Perma")
    assert done.message.endswith(
        "(the bucket is in eu-west-1: set spec.model.storage.region: eu-west-1)"
    )


def test_access_denied_to_one_object_says_the_key_may_not_exist(
    server: Server, run: Callable[..., Run]
) -> None:
    server.routes["/models/wine/model.bin"] = s3_error(403, "AccessDenied")
    done = run("s3://models/wine/model.bin", "--s3-endpoint", server.url(""))
    assert done.code == EXIT_PERMANENT
    assert done.message == (
        "s3://models/wine/model.bin: 403 Forbidden: AccessDenied: AccessDenied says the store"
        " (or no such key: S3 answers 403, not 404, for a key that does not exist when the"
        " keys may not list the bucket, s3:ListBucket)"
    )
    # Refused keys are no missing key: said as the store says it.
    server.routes["/models/wine/model.bin"] = s3_error(403, "SignatureDoesNotMatch")
    done = run("s3://models/wine/model.bin", "--s3-endpoint", server.url(""))
    assert done.message.endswith("SignatureDoesNotMatch says the store")


def test_a_marker_that_cannot_be_written_is_a_local_write_error_not_a_crash(
    server: Server, run: Callable[..., Run], tmp_path: Path
) -> None:
    server.routes["/model.bin"] = send(DATA)
    marker = tmp_path / "model" / MARKER
    marker.mkdir(parents=True)  # in its way
    done = run(server.url("/model.bin"))
    assert done.code == EXIT_PERMANENT
    assert done.message.endswith(f": cannot write {marker}: Is a directory")


def test_a_full_disk_while_moving_into_the_folder_is_said_as_a_full_disk(
    server: Server, run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(_source: object, target: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(fetch_main.os, "replace", full)
    server.routes["/model.bin"] = send(DATA)
    done = run(server.url("/model.bin"))
    assert done.code == EXIT_PERMANENT
    assert re.search(r": no space left on device writing model\.bin after 0 bytes", done.message)


def test_a_key_named_like_an_archive_that_is_a_folder_is_fetched_as_a_folder(
    server: Server, run: Callable[..., Run]
) -> None:
    """s3://models/wine/model.tar.gz is no object but a prefix: its objects, as they are."""
    server.routes["/models/wine/model.tar.gz"] = s3_error(404, "NoSuchKey")
    server.routes["/models"] = s3_listing("wine/model.tar.gz/weights.bin")
    server.routes["/models/wine/model.tar.gz/weights.bin"] = send(DATA)
    done = run("s3://models/wine/model.tar.gz", "--s3-endpoint", server.url(""))
    assert done.code == 0, done.message
    assert (done.dest / "weights.bin").read_bytes() == DATA
