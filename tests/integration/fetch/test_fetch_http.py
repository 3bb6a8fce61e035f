"""vigil-fetch against a real HTTP(S) server: files, archives, digests, retries, failures."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_server import ArtifactServer, Seen
from fetch_kit import Artifacts, run_fetch, sha256

pytestmark = pytest.mark.integration

A = Artifacts


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_a_file_lands_in_the_folder_with_progress_and_a_summary(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    done = run_fetch(http_server.url("files", A.MODEL), dest)
    assert done.code == 0, done.log
    assert (dest / A.MODEL).read_bytes() == artifacts.model
    size = len(artifacts.model)
    assert f"{size} of {size} bytes (100%)" in done.log
    assert done.message is not None
    assert f"fetched 1 file, {size} bytes into {dest}" in done.message


@pytest.mark.parametrize("name", [A.TAR, A.ZIP])
def test_an_archive_is_unpacked_and_not_kept(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path, name: str
) -> None:
    done = run_fetch(http_server.url("files", name), dest)
    assert done.code == 0, done.log
    assert listing(dest) == [
        ".vigil-fetch.json",
        "wine",
        "wine/model-settings.json",
        "wine/model.joblib",
    ]
    assert (dest / "wine" / "model.joblib").read_bytes() == artifacts.model
    assert "fetched 2 files" in done.last_line


def test_a_matching_sha256_is_verified_and_reported(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    digest = artifacts.digest(A.TAR)
    done = run_fetch(http_server.url("files", A.TAR), dest, "--sha256", digest)
    assert done.code == 0, done.log
    assert done.last_line.endswith(f"sha256 {digest}")


def test_a_sha256_mismatch_is_permanent_and_leaves_nothing(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    wrong = sha256(b"another model")
    done = run_fetch(http_server.url("files", A.TAR), dest, "--sha256", wrong)
    assert done.code == 1
    url = http_server.url("files", A.TAR)
    assert done.message == (
        f"{url}: sha256 mismatch: expected {wrong}, got {artifacts.digest(A.TAR)}"
    )
    assert listing(dest) == []


def test_a_missing_file_is_permanent_at_the_first_answer(
    http_server: ArtifactServer, dest: Path
) -> None:
    done = run_fetch(http_server.url("files", "absent.joblib"), dest)
    assert done.code == 1
    assert done.message == f"{http_server.url('files', 'absent.joblib')}: 404 Not Found"
    assert len(http_server.requests_for("absent.joblib")) == 1


def test_a_server_failing_twice_is_retried_until_it_answers(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    url = http_server.url("flaky/2", A.MODEL)
    done = run_fetch(url, dest)
    assert done.code == 0, done.log
    assert (dest / A.MODEL).read_bytes() == artifacts.model
    assert "503 Service Unavailable; retry 1 of 5 in" in done.log
    assert "503 Service Unavailable; retry 2 of 5 in" in done.log
    assert len([s for s in http_server.seen if s.path == "/flaky/2/" + A.MODEL]) == 3


def test_a_server_failing_past_the_retries_ends_as_transient(
    http_server: ArtifactServer, dest: Path
) -> None:
    url = http_server.url("flaky/50", A.MODEL)
    done = run_fetch(url, dest, "--retries", "2")
    assert done.code == 75
    assert done.message == f"{url}: 503 Service Unavailable (gave up after 3 attempts in a row)"


def test_a_transfer_cut_in_the_middle_resumes_where_it_stopped(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    digest = sha256(artifacts.model)
    done = run_fetch(http_server.url("reset", A.MODEL), dest, "--sha256", digest)
    assert done.code == 0, done.log
    assert (dest / A.MODEL).read_bytes() == artifacts.model
    half = len(artifacts.model) // 2
    assert http_server.requests_for(A.MODEL)[-2:] == [
        Seen(f"/reset/{A.MODEL}", None),
        Seen(f"/reset/{A.MODEL}", f"bytes={half}-"),
    ]
    assert f"resuming at byte {half}" in done.log


@pytest.mark.parametrize(
    ("route", "resumed"),
    [("stall", True), ("mute", False)],
    ids=["silent-after-half-the-body", "silent-after-the-headers"],
)
def test_a_server_gone_silent_times_out_and_the_transfer_resumes(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path, route: str, resumed: bool
) -> None:
    done = run_fetch(http_server.url(route, A.MODEL), dest, "--timeout", "1")
    assert done.code == 0, done.log
    assert (dest / A.MODEL).read_bytes() == artifacts.model
    port = http_server.port
    assert f"timed out waiting for 127.0.0.1:{port}; retry 1 of 5" in done.log
    assert "closed early" not in done.log  # the buffered reader's empty read is no end
    asked = f"bytes={len(artifacts.model) // 2}-" if resumed else None
    assert http_server.requests_for(A.MODEL)[-1] == Seen(f"/{route}/{A.MODEL}", asked)


def test_an_unreachable_host_ends_as_transient_after_the_retries(dest: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the socket closes
    done = run_fetch(f"http://127.0.0.1:{port}/model.joblib", dest, "--retries", "2")
    assert done.code == 75
    assert done.message == (
        f"http://127.0.0.1:{port}/model.joblib: cannot connect to 127.0.0.1:{port}:"
        " connection refused (gave up after 3 attempts in a row)"
    )


def test_a_redirect_is_followed(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    done = run_fetch(http_server.url("redirect", A.MODEL), dest)
    assert done.code == 0, done.log
    assert (dest / A.MODEL).read_bytes() == artifacts.model


def test_https_trusts_the_ca_it_is_given_and_refuses_an_unknown_one(
    https_server: ArtifactServer,
    artifacts: Artifacts,
    certificate: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    url = https_server.url("files", A.MODEL)
    trusted = run_fetch(url, tmp_path / "trusted", "--ca-file", str(certificate[0]))
    assert trusted.code == 0, trusted.log
    assert (tmp_path / "trusted" / A.MODEL).read_bytes() == artifacts.model
    unknown = run_fetch(url, tmp_path / "unknown")
    assert unknown.code == 1
    assert unknown.message == (
        f"{url}: TLS certificate verification failed: self-signed certificate"
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (
            A.EVIL_TAR,
            "archive symlink 'wine/up' points to '../../..', outside the destination folder",
        ),
        (A.EVIL_ZIP, "archive member '../../escaped.txt' escapes the destination folder"),
    ],
)
def test_an_archive_escaping_its_folder_is_refused_and_leaves_nothing(
    http_server: ArtifactServer, tmp_path: Path, name: str, words: str
) -> None:
    dest = tmp_path / "deep" / "models"
    done = run_fetch(http_server.url("files", name), dest)
    assert done.code == 1
    assert done.message == f"{http_server.url('files', name)}: {words}"
    assert listing(dest) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "deep",
        "models",
        "models.termination-log",
    ]


def test_progress_says_bytes_of_total_as_it_goes(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    done = run_fetch(http_server.url("files", A.MODEL), dest, "--progress-interval", "0")
    assert done.code == 0, done.log
    size = len(artifacts.model)
    counts = [int(n) for n in re.findall(rf"(\d+) of {size} bytes", done.log)]
    assert len(counts) >= 3
    assert counts == sorted(counts)
    assert counts[-1] == size


def test_progress_without_a_length_says_the_total_is_unknown(
    http_server: ArtifactServer, artifacts: Artifacts, dest: Path
) -> None:
    done = run_fetch(http_server.url("chunked", A.MODEL), dest)
    assert done.code == 0, done.log
    assert f"{len(artifacts.model)} bytes (total unknown)" in done.log


def test_a_second_run_finds_the_artifact_there_and_fetches_nothing(
    http_server: ArtifactServer, dest: Path
) -> None:
    url = http_server.url("files", A.TAR)
    assert run_fetch(url, dest).code == 0
    before = len(http_server.seen)
    again = run_fetch(url, dest)
    assert again.code == 0
    assert again.message is not None
    assert again.message.startswith(f"{url}: already in {dest} (2 files, ")
    assert len(http_server.seen) == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted for the test and removed after it (needs root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "vigil-fetch-test", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.fail(f"a full-disk test needs a 1 MiB tmpfs (root): mount said {made.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize(
    ("route", "name", "words"),
    [
        ("files", A.MODEL, r": model\.joblib needs 3145728 bytes, \d+ bytes free in "),
        ("chunked", A.MODEL, r" writing model\.joblib after \d+ bytes \(\d+ bytes free in "),
        (
            "files",
            A.ZEROS_TAR,
            r": zeros\.tar\.gz unpacks to more than \d+ bytes, \d+ bytes free in ",
        ),
    ],
)
def test_a_full_disk_is_permanent_and_says_so(
    http_server: ArtifactServer, small_disk: Path, route: str, name: str, words: str
) -> None:
    termination = small_disk.parent / "termination-log"
    done = run_fetch(http_server.url(route, name), small_disk / "models", termination=termination)
    assert done.code == 1
    assert done.message is not None
    assert re.fullmatch(
        re.escape(http_server.url(route, name)) + ": no space left on device" + words + ".*",
        done.message,
    )
    assert listing(small_disk / "models") == []
