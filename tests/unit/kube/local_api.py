"""A local HTTP server that plays the API server for the kube adapter's tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from vigil.kube.cache import ObjectCache
from vigil.kube.client import Connection, KubeClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def local_api(
    handler: Handler, *, token: str | None = None, cache: ObjectCache | None = None
) -> AsyncIterator[KubeClient]:
    """Serve every request with `handler`; yield a KubeClient pointed at it."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server = f"http://127.0.0.1:{runner.addresses[0][1]}"
    client = KubeClient(Connection(server=server, token=token), cache=cache)
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()
