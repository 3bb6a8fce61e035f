"""A small but correct HTTP/1.1 model server for the sidecar fuzz tests (aiohttp).

Why not bench/sidecar/trivial_upstream.py: that one reads Content-Length only
(good enough for a benchmark), while fuzzing also sends chunked bodies and
pipelined requests that the sidecar forwards as they are; a mis-framing
upstream would make the sidecar's own behaviour impossible to judge. Every
POST gets the same small Open Inference Protocol v2 answer, so whatever the
sidecar counts comes from the request alone. Usage: ``python fuzz_upstream.py PORT``.
"""

from __future__ import annotations

import sys

from aiohttp import web

BODY = (
    b'{"model_name":"fuzz","outputs":[{"name":"predict","shape":[1,1],'
    b'"datatype":"FP64","data":[0.5]}]}'
)


async def infer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def ready(_: web.Request) -> web.Response:
    return web.json_response({})


def main(port: int) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_route("*", "/{tail:.*}", infer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
