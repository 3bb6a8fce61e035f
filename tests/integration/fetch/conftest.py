"""Real servers for the fetcher's tests: an aiohttp artifact server (http and https)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_server import ArtifactServer
from fetch_kit import Artifacts


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
