"""``python -m vigil.devcluster.forward LISTEN_HOST PORT TARGET_HOST [OWNER]``: a TCP forwarder.

The API server listens on 127.0.0.1 only (every local client uses that), and
it takes one bind address. Pods and the real node reach it at the machine's
end of the node link instead; this forwards that address to 127.0.0.1 on the
same port, byte for byte, so TLS (and kubelet's client certificate) is
end to end. ``OWNER`` is not used: the cluster passes its state folder, so
that its command line names it (``LocalCluster.down`` stops the processes
whose command line does, a forwarder orphaned by a kill among them).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(listen_host: str, port: int, target_host: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for each in (writer, upstream_writer):
                each.close()

    server = await asyncio.start_server(handle, listen_host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"forwarding {listen_host}:{port} -> {target_host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print("usage: python -m vigil.devcluster.forward LISTEN_HOST PORT TARGET_HOST [OWNER]")
        return 2
    asyncio.run(_serve(args[0], int(args[1]), args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
