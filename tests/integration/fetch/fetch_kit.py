"""Run the real ``vigil-fetch`` entry point and the artifacts it fetches in the tests."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FETCHER = Path(sys.executable).parent / "vigil-fetch"
#: Generous: a run that retries sleeps a little (back-off base 0.05 s in tests).
FETCH_TIMEOUT = 300


@dataclass(frozen=True)
class Fetch:
    """One run: exit code, the log (stderr), the termination message."""

    code: int
    log: str
    message: str | None

    @property
    def last_line(self) -> str:
        return self.log.strip().splitlines()[-1]


def run_fetch(
    uri: str,
    dest: Path,
    *args: str,
    env: dict[str, str] | None = None,
    termination: Path | None = None,
) -> Fetch:
    """Run the fetcher; its termination message goes beside ``dest`` unless told where."""
    if not FETCHER.exists():
        pytest.fail(f"{FETCHER} is missing: run make install (pyproject's vigil-fetch script)")
    termination = termination or dest.parent / f"{dest.name}.termination-log"
    command = [
        str(FETCHER), uri, "--dest", str(dest), "--termination-log", str(termination),
        "--retry-base-seconds", "0.05", *args,
    ]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=FETCH_TIMEOUT,
        env={**environ, **(env or {})},
    )
    assert "Traceback" not in done.stderr, done.stderr
    message = termination.read_text() if termination.exists() else None
    return Fetch(done.returncode, done.stderr, message)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Artifacts:
    """Files a test server offers, made once per session in ``folder``."""

    folder: Path
    model: bytes
    settings: bytes

    MODEL = "model.joblib"
    TAR = "model.tar.gz"
    ZIP = "model.zip"
    EVIL_TAR = "evil.tar.gz"
    EVIL_ZIP = "evil.zip"
    ZEROS_TAR = "zeros.tar.gz"
    ZEROS_BYTES = 8 << 20

    @classmethod
    def make(cls, folder: Path) -> Artifacts:
        model = os.urandom(3 << 20)
        settings = b'{"name": "wine", "implementation": "mlserver_sklearn.SKLearnModel"}'
        (folder / cls.MODEL).write_bytes(model)
        members = {"wine/model.joblib": model, "wine/model-settings.json": settings}
        with tarfile.open(folder / cls.TAR, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        with zipfile.ZipFile(folder / cls.ZIP, "w", zipfile.ZIP_DEFLATED) as zipped:
            for name, data in members.items():
                zipped.writestr(name, data)
        with tarfile.open(folder / cls.EVIL_TAR, "w:gz") as tar:
            good = tarfile.TarInfo("wine/model.joblib")
            good.size = 4
            tar.addfile(good, io.BytesIO(b"good"))
            link = tarfile.TarInfo("wine/up")
            link.type = tarfile.SYMTYPE
            link.linkname = "../../.."
            tar.addfile(link)
        with zipfile.ZipFile(folder / cls.EVIL_ZIP, "w") as zipped:
            zipped.writestr("wine/model.joblib", b"good")
            zipped.writestr("../../escaped.txt", b"outside")
        with tarfile.open(folder / cls.ZEROS_TAR, "w:gz") as tar:
            info = tarfile.TarInfo("zeros.bin")
            info.size = cls.ZEROS_BYTES
            tar.addfile(info, io.BytesIO(bytes(cls.ZEROS_BYTES)))
        return cls(folder, model, settings)

    def digest(self, name: str) -> str:
        return sha256((self.folder / name).read_bytes())
