"""Real servers for the fetcher's tests: an aiohttp artifact server (http and https) and
SeaweedFS's S3 gateway (built by ``make seaweedfs``), all on 127.0.0.1."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_server import ArtifactServer
from fetch_kit import Artifacts

from vigil.devcluster.seaweedfs import S3Store, StoreError, put_object, running_store


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return Artifacts.make(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def http_server(artifacts: Artifacts) -> Iterator[ArtifactServer]:
    server = ArtifactServer(artifacts.folder).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        pytest.fail("openssl is needed for the https tests (apt-get install openssl)")
    return cert, key


@pytest.fixture(scope="session")
def https_server(artifacts: Artifacts, certificate: tuple[Path, Path]) -> Iterator[ArtifactServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = ArtifactServer(artifacts.folder, ssl_context=context).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory, artifacts: Artifacts) -> Iterator[S3Store]:
    """SeaweedFS with the artifacts uploaded to bucket ``models`` (and a folder of objects)."""
    try:
        with running_store(tmp_path_factory.mktemp("seaweedfs")) as store:
            for name in (Artifacts.MODEL, Artifacts.TAR, Artifacts.EVIL_TAR):
                put_object(store, "models", f"wine/v1/{name}", artifacts.folder / name)
            put_object(store, "models", "wine/v2/model.joblib", artifacts.folder / Artifacts.MODEL)
            put_object(store, "models", "wine/v2/model-settings.json", artifacts.settings)
            put_object(store, "models", "wine/v2/data/extra weights ü+1.bin", b"extra")
            yield store
    except StoreError as error:
        pytest.fail(f"the S3 tests need SeaweedFS: {error}")
