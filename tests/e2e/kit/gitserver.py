"""A Git repository served on 127.0.0.1 by git's own HTTP backend, as a forge serves one.

``git http-backend`` (git's smart-HTTP CGI program) runs once per request
behind a tiny CGI server in this process: clones and fetches (Flux's
source-controller) and pushes (the test, from a working copy of its own)
go over HTTP like they would to a Git host. Nothing is mocked: the
repository is a real bare repository, the protocol git's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

#: The author and committer of the test's commits.
IDENTITY = {
    "GIT_AUTHOR_NAME": "Vigil e2e",
    "GIT_AUTHOR_EMAIL": "e2e@vigil.dev",
    "GIT_COMMITTER_NAME": "Vigil e2e",
    "GIT_COMMITTER_EMAIL": "e2e@vigil.dev",
}


def git_binary() -> str:
    """``git``, with its HTTP backend; fails the test saying what is missing."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is not installed: the GitOps tests serve a repository with it")
    exec_path = subprocess.run([git, "--exec-path"], capture_output=True, text=True, check=True)
    backend = Path(exec_path.stdout.strip()) / "git-http-backend"
    if not backend.is_file():
        pytest.fail(f"git's HTTP backend is missing ({backend}): install git's full package")
    return git


def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run ``git args`` in ``cwd``; its stdout. A failure fails with git's stderr."""
    result = subprocess.run(
        [git_binary(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **IDENTITY, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


class _Backend(BaseHTTPRequestHandler):
    """One HTTP request through ``git http-backend`` (CGI/1.1)."""

    project_root: Path
    requests: list[str]

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        self.requests.append(f"{self.command} {url.path}?{url.query}")
        result = subprocess.run(
            [git_binary(), "http-backend"], input=body, capture_output=True, env=env, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        if result.returncode != 0 and not head:
            status, payload = 500, result.stderr
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request list is the log


@dataclass
class GitRepository:
    """A bare repository ``name``.git under the server, and a working copy to commit from."""

    url: str
    bare: Path
    work: Path

    def commit(self, files: Mapping[str, str | bytes | None], message: str) -> str:
        """Write (None: delete) ``files`` in the working copy, commit and push them over HTTP;
        the new commit's id."""
        for relative, content in files.items():
            path = self.work / relative
            if content is None:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git("add", "--all", ".", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=self.work)
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work).strip()


@dataclass
class GitServer:
    """Bare repositories under ``root``, served at ``http://127.0.0.1:<port>/<name>.git``."""

    root: Path
    port: int
    requests: list[str]

    def repository(self, name: str, seed: Path | None = None) -> GitRepository:
        """A new repository ``name`` (branch main, pushes allowed) and its working copy;
        with ``seed``, its first commit holds that folder's files."""
        bare = self.root / f"{name}.git"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=self.root)
        git("config", "http.receivepack", "true", cwd=bare)
        url = f"http://127.0.0.1:{self.port}/{name}.git"
        work = self.root / "work" / name
        work.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "--quiet", url, str(work), cwd=self.root)
        git("checkout", "--quiet", "-B", "main", cwd=work)
        repository = GitRepository(url, bare, work)
        if seed is not None:
            shutil.copytree(seed, work, dirs_exist_ok=True)
            repository.commit({}, "the project's manifests")
        return repository


@contextmanager
def git_server(root: Path) -> Iterator[GitServer]:
    """git's HTTP backend on 127.0.0.1 (a free port), serving the bare repositories under
    ``root``; stopped afterwards."""
    git_binary()
    root.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    handler = type("Backend", (_Backend,), {"project_root": root, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
    thread.start()
    try:
        yield GitServer(root, server.server_address[1], requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
