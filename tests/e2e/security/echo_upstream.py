"""A model server stand-in that says what it received (for the live-port security test).

Every request is answered 200 with ``X-Upstream: echo`` and a JSON body holding
the method, the raw path and the headers, so the test can tell the model's
answers from the sidecar's own. Usage: ``python echo_upstream.py PORT``.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "headers": dict(request.headers),
            "body_bytes": len(body),
        },
        headers={"X-Upstream": "echo"},
    )


def main(port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
