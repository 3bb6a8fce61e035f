"""Back-off, progress lines, digests, termination messages, and what counts as transient."""

from __future__ import annotations

import errno
import http.client
import io
import pickle
import socket
from pathlib import Path

import pytest

from vigil.fetch.errors import (
    EXIT_PERMANENT,
    EXIT_TRANSIENT,
    FetchError,
    HttpStatusError,
    PermanentError,
    TransientError,
)
from vigil.fetch.main import (
    TERMINATION_MESSAGE_BYTES,
    checked_sha256,
    quantity,
    write_termination_message,
)
from vigil.fetch.transfer import (
    Progress,
    RetryPolicy,
    check_room,
    local_write_error,
    transient_error_words,
)
from vigil.fetch.unpack import UnsafeArchive

URL = "http://store.internal:8080/m.bin"


def test_back_off_doubles_up_to_its_cap_with_at_most_a_fifth_of_jitter() -> None:
    policy = RetryPolicy(retries=8, base_seconds=1.0, cap_seconds=10.0)
    delays = [policy.delay(n) for n in range(1, 7)]
    for delay, nominal in zip(delays, [1, 2, 4, 8, 10, 10], strict=True):
        assert 0.8 * nominal <= delay <= nominal
    assert 0.8 * 10 <= policy.delay(1, retry_after=60) <= 10  # Retry-After, capped


def test_a_servers_retry_after_is_waited_out_whole() -> None:
    # The jitter came after it: 8.3-9.7 s for "Retry-After: 10", and a second 429.
    policy = RetryPolicy(retries=8, base_seconds=1.0, cap_seconds=30.0)
    assert {policy.delay(1, retry_after=10) for _ in range(50)} == {10}


def test_progress_says_bytes_of_total_and_rewinds_on_a_restart() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(1000, interval=1.0, out=out, clock=lambda: now[0])
    progress.advance(100)
    assert out.getvalue() == ""  # less than an interval since the start
    now[0] = 1.5
    progress.advance(150)
    assert out.getvalue().startswith("vigil-fetch: 250 of 1000 bytes (25%),")
    progress.rewind(250)
    assert progress.line().startswith("0 of 1000 bytes (0%)")
    assert Progress(None, clock=lambda: 1.0).line().startswith("0 bytes (total unknown)")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection refused"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "reset by peer"),
        (TimeoutError("timed out"), "timed out waiting for store.internal:8080"),
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve host 'store.internal'"),
        (http.client.IncompleteRead(b"", 10), "connection closed early"),
        (http.client.RemoteDisconnected("gone"), "closed the connection without a response"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "cannot reach store.internal:8080"),
    ],
)
def test_network_errors_are_transient_in_their_own_words(error: Exception, words: str) -> None:
    assert words in (transient_error_words(error, URL) or "")


def test_other_local_errors_are_not_transient() -> None:
    assert transient_error_words(PermissionError(errno.EACCES, "denied"), URL) is None


def test_a_full_disk_is_permanent_and_says_how_much_room_is_left(tmp_path: Path) -> None:
    error = local_write_error(OSError(errno.ENOSPC, "No space left"), tmp_path / "m.bin", 4096)
    assert isinstance(error, PermanentError)
    assert str(error).startswith("no space left on device writing m.bin after 4096 bytes (")
    with pytest.raises(PermanentError, match=r"needs \d+ bytes, \d+ bytes free"):
        check_room(tmp_path, 1 << 62, "m.bin")


def test_exit_codes_tell_permanent_from_given_up() -> None:
    assert PermanentError("x").exit_code == EXIT_PERMANENT == 1
    assert TransientError("x").exit_code == EXIT_TRANSIENT == 75
    prefixed = PermanentError("403 Forbidden").about("object wine/m.bin")
    assert (str(prefixed), type(prefixed)) == ("object wine/m.bin: 403 Forbidden", PermanentError)


class Refused(PermanentError):
    """A failure whose __init__ takes more than its words, keyword-only."""

    def __init__(self, words: str, *, bucket: str) -> None:
        super().__init__(words)
        self.bucket = bucket


FAILURES: list[FetchError] = [
    PermanentError("404 Not Found"),
    TransientError("timed out waiting for store.internal:8080"),
    HttpStatusError("403 Forbidden: AccessDenied: Access Denied", 403),
    UnsafeArchive("archive member '../x' escapes the destination folder"),
    Refused("403 Forbidden", bucket="models"),
]


def all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *all_subclasses(direct)}}


@pytest.mark.parametrize("error", FAILURES, ids=lambda error: type(error).__name__)
def test_a_failure_said_about_an_object_keeps_its_kind_and_attributes(error: FetchError) -> None:
    about = error.about("object wine/m.bin")
    assert str(about) == f"object wine/m.bin: {error}"
    assert type(about) is type(error)
    assert vars(about) == vars(error)
    assert about.exit_code == error.exit_code
    assert not str(error).startswith("object")  # the original keeps its words
    copied = pickle.loads(pickle.dumps(about))
    assert (type(copied), str(copied), vars(copied)) == (type(about), str(about), vars(about))


def test_every_failure_with_its_own_init_is_among_those_tried() -> None:
    own_init = {
        cls
        for cls in all_subclasses(FetchError)
        if cls.__module__.startswith("vigil.") and "__init__" in vars(cls)
    }
    assert own_init, "HttpStatusError at least"
    assert own_init <= {type(error) for error in FAILURES}


@pytest.mark.parametrize("value", ["sha256:" + "AB" * 32, "ab" * 32])
def test_a_sha256_may_be_prefixed_and_in_any_case(value: str) -> None:
    assert checked_sha256(value) == "ab" * 32


@pytest.mark.parametrize("value", ["ab" * 31, "zz" * 32, "md5:" + "ab" * 32])
def test_a_malformed_sha256_is_refused(value: str) -> None:
    with pytest.raises(PermanentError, match="is not 64 hexadecimal digits"):
        checked_sha256(value)


def test_the_termination_message_is_cut_to_what_kubernetes_keeps(tmp_path: Path) -> None:
    target = tmp_path / "termination-log"
    write_termination_message("é" * TERMINATION_MESSAGE_BYTES, str(target))
    kept = target.read_text()
    assert len(kept.encode()) <= TERMINATION_MESSAGE_BYTES
    assert set(kept) == {"é"}  # never half a character


def test_a_termination_message_naming_a_path_that_is_no_utf8_is_written_escaped(
    tmp_path: Path,
) -> None:
    # An archive member from a Latin-1 system: its name's byte 0xE8 arrives as a surrogate.
    target = tmp_path / "termination-log"
    write_termination_message("m.tar.gz: cannot write out/mod\udce8le/w.bin: No space", str(target))
    assert target.read_text() == "m.tar.gz: cannot write out/mod\\udce8le/w.bin: No space"


def test_without_a_container_s_termination_log_none_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = tmp_path / "termination-log"
    monkeypatch.setattr("vigil.fetch.main.TERMINATION_LOG", str(absent))
    write_termination_message("a message", None)
    assert not absent.exists()
    absent.write_text("")  # the kubelet's bind mount exists in a container
    write_termination_message("a message", None)
    assert absent.read_text() == "a message"


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("20Gi", 20 << 30),
        ("500M", 500_000_000),
        ("1e3", 1000),
        ("1.5Ki", 1536),
        ("4096", 4096),
        # The CRD takes what Kubernetes takes: a sign and milli too (it failed the fetch).
        ("+1Gi", 1 << 30),
        ("1500m", 2),
        ("1E", 10**18),  # exa, not an exponent without digits (a bug's exit before)
        ("2Ei", 2 << 60),
    ],
)
def test_a_size_limit_is_a_kubernetes_quantity(value: str, size: int) -> None:
    assert quantity(value) == size


@pytest.mark.parametrize("value", ["20GB", "-1Gi", "Gi", ""])
def test_a_size_limit_that_is_no_quantity_is_refused(value: str) -> None:
    with pytest.raises(PermanentError, match="is not a quantity such as 20Gi"):
        quantity(value)
