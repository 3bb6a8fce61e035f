"""A real HTTP(S) artifact server for the fetcher's tests (aiohttp, on 127.0.0.1).

Routes, each over the files of one folder:
  /files/NAME           the file (Content-Length, Range, ETag): a plain static server
  /flaky/N/NAME         503 for the first N requests of this path, then the file
  /reset/NAME           the first request gets half the body and a closed connection
  /chunked/NAME         the file with no Content-Length (chunked transfer)
  /stall/NAME           the first request gets half the body, then silence (the
                        connection stays open until the client leaves)
  /mute/NAME            the first request gets the headers and no body, then silence
  /redirect/NAME        302 to /files/NAME
Every request is recorded (path and Range header) so tests can tell retries
and resumed transfers apart.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

CHUNK = 256 << 10


@dataclass(frozen=True)
class Seen:
    path: str
    range: str | None


@dataclass
class ArtifactServer:
    folder: Path
    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _hits: collections.Counter[str] = field(default_factory=collections.Counter)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, route: str, name: str) -> str:
        return f"{self.base}/{route}/{name}"

    def requests_for(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/" + name)]

    def start(self) -> ArtifactServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/files/{name}", self._file)
            app.router.add_get("/flaky/{failures}/{name}", self._flaky)
            app.router.add_get("/reset/{name}", self._reset)
            app.router.add_get("/chunked/{name}", self._chunked)
            app.router.add_get("/stall/{name}", self._stall)
            app.router.add_get("/mute/{name}", self._mute)
            app.router.add_get("/redirect/{name}", self._redirect)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            self.port = self._runner.addresses[0][1]
            ready.set()

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="artifact-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the artifact server did not start within 10 s")
        return self

    def stop(self) -> None:
        assert self._loop is not None and self._runner is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _record(self, request: web.Request) -> int:
        self.seen.append(Seen(request.path, request.headers.get("Range")))
        self._hits[request.path] += 1
        return self._hits[request.path]

    def _path(self, request: web.Request) -> Path:
        path = self.folder / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return path

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        return web.FileResponse(self._path(request))

    async def _flaky(self, request: web.Request) -> web.StreamResponse:
        if self._record(request) <= int(request.match_info["failures"]):
            raise web.HTTPServiceUnavailable(text="warming up")
        return web.FileResponse(self._path(request))

    async def _half_then(
        self, request: web.Request, stall: bool, share: float = 0.5
    ) -> web.StreamResponse:
        """The file again after the first request, which gets ``share`` of the body, then
        a closed connection (``stall`` False) or silence until the client leaves."""
        path = self._path(request)
        if self._record(request) > 1:
            return web.FileResponse(path)
        data = path.read_bytes()
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)  # sends the headers at once
        if sent := int(len(data) * share):
            await response.write(data[:sent])
        for _ in range(300 if stall else 0):  # at most 30 s
            if request.transport is None or request.transport.is_closing():
                break  # the client left
            await asyncio.sleep(0.1)
        if request.transport is not None:
            request.transport.close()
        return response

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        return await self._half_then(request, stall=False)

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        return await self._half_then(request, stall=True)

    async def _mute(self, request: web.Request) -> web.StreamResponse:
        return await self._half_then(request, stall=True, share=0.0)

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        path = self._path(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        raise web.HTTPFound(f"/files/{request.match_info['name']}")
