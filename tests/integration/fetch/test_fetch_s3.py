"""vigil-fetch against a real S3-compatible store (SeaweedFS): keys, prefixes, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from fetch_kit import Artifacts, run_fetch, sha256

from vigil.devcluster.seaweedfs import READER, S3Store, request

pytestmark = pytest.mark.integration

A = Artifacts


def reader_env(store: S3Store, **override: str) -> dict[str, str]:
    """What an init container gets: the endpoint, and the reader's keys (least privilege)."""
    return {
        "AWS_ENDPOINT_URL_S3": store.endpoint,
        "AWS_ACCESS_KEY_ID": READER.access_key,
        "AWS_SECRET_ACCESS_KEY": READER.secret_key,
        **override,
    }


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_an_object_is_fetched_with_keys_from_a_secret_mount(
    s3_store: S3Store, artifacts: Artifacts, tmp_path: Path, dest: Path
) -> None:
    secret = tmp_path / "s3-credentials"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text(READER.access_key)
    (secret / "AWS_SECRET_ACCESS_KEY").write_text(READER.secret_key + "\n")
    done = run_fetch(
        f"s3://models/wine/v1/{A.MODEL}",
        dest,
        "--s3-endpoint",
        s3_store.endpoint,
        "--s3-credentials",
        str(secret),
        "--s3-addressing",
        "path",
    )
    assert done.code == 0, done.log
    assert (dest / A.MODEL).read_bytes() == artifacts.model
    size = len(artifacts.model)
    assert f"{size} of {size} bytes (100%)" in done.log


def test_an_archive_object_is_verified_and_unpacked(
    s3_store: S3Store, artifacts: Artifacts, dest: Path
) -> None:
    digest = artifacts.digest(A.TAR)
    done = run_fetch(
        f"s3://models/wine/v1/{A.TAR}", dest, "--sha256", digest, env=reader_env(s3_store)
    )
    assert done.code == 0, done.log
    assert (dest / "wine" / "model.joblib").read_bytes() == artifacts.model
    assert done.last_line.endswith(f"sha256 {digest}")


def test_a_digest_mismatch_is_permanent(
    s3_store: S3Store, artifacts: Artifacts, dest: Path
) -> None:
    wrong = sha256(b"not it")
    done = run_fetch(
        f"s3://models/wine/v1/{A.TAR}", dest, "--sha256", wrong, env=reader_env(s3_store)
    )
    assert done.code == 1
    assert done.message == (
        f"s3://models/wine/v1/{A.TAR}: sha256 mismatch:"
        f" expected {wrong}, got {artifacts.digest(A.TAR)}"
    )


@pytest.mark.parametrize("uri", ["s3://models/wine/v2/", "s3://models/wine/v2"])
def test_a_prefix_fetches_every_object_under_it_in_place(
    s3_store: S3Store, artifacts: Artifacts, dest: Path, uri: str
) -> None:
    done = run_fetch(uri, dest, env=reader_env(s3_store))
    assert done.code == 0, done.log
    assert (dest / "model.joblib").read_bytes() == artifacts.model
    assert (dest / "model-settings.json").read_bytes() == artifacts.settings
    # A key with a space, a '+' and a non-ASCII letter: signed and fetched as written.
    assert (dest / "data" / "extra weights ü+1.bin").read_bytes() == b"extra"
    assert "fetched 3 files" in done.last_line


def test_an_archive_escaping_its_folder_is_refused(s3_store: S3Store, dest: Path) -> None:
    done = run_fetch(f"s3://models/wine/v1/{A.EVIL_TAR}", dest, env=reader_env(s3_store))
    assert done.code == 1
    assert done.message is not None
    assert "archive symlink 'wine/up' points to '../../..', outside" in done.message


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (
            {"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
            "403 Forbidden: SignatureDoesNotMatch: The request signature we calculated"
            " does not match the signature you provided.",
        ),
        (
            {"AWS_ACCESS_KEY_ID": "nobody"},
            "403 Forbidden: InvalidAccessKeyId: The access key ID you provided"
            " does not exist in our records.",
        ),
        ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "403 Forbidden: AccessDenied"),
    ],
    ids=["wrong-secret", "unknown-key", "anonymous"],
)
def test_wrong_credentials_are_permanent_in_the_store_s_words(
    s3_store: S3Store, dest: Path, override: dict[str, str], words: str
) -> None:
    uri = f"s3://models/wine/v1/{A.MODEL}"
    done = run_fetch(uri, dest, "--retries", "0", env=reader_env(s3_store, **override))
    assert done.code == 1
    assert done.message is not None
    assert done.message.startswith(f"{uri}: {words}")


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("s3://models/wine/v1/absent.joblib", "404 Not Found: NoSuchKey"),
        ("s3://no-such-bucket/model.joblib", "404 Not Found: NoSuchBucket"),
        ("s3://models/wine/absent/", "no objects under s3://models/wine/absent/"),
    ],
)
def test_a_missing_object_is_permanent(s3_store: S3Store, dest: Path, uri: str, words: str) -> None:
    done = run_fetch(uri, dest, env=reader_env(s3_store))
    assert done.code == 1
    assert done.message is not None
    assert done.message.startswith(f"{uri}: {words}")


def test_the_reader_identity_may_read_but_not_write(s3_store: S3Store) -> None:
    status, _ = request(s3_store, "GET", "models", f"wine/v1/{A.MODEL}", identity=READER)
    assert status == 200
    status, _ = request(s3_store, "PUT", "models", "reader-was-here", body=b"x", identity=READER)
    assert status == 403
