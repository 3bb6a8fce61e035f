"""A static file server for the fetch benchmark: aiohttp's FileResponse (sendfile), one process.

python file_server.py FOLDER PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


def main() -> None:
    folder, port = sys.argv[1], int(sys.argv[2])
    app = web.Application()
    app.router.add_static("/files/", folder)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
