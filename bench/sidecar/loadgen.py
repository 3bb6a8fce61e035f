"""Load generator: fixed-rate open loop (latency) and closed loop (saturation).

Open loop: request *i* is sent at ``t0 + i / rate`` whatever happened to
earlier requests (new keep-alive connections are opened when all are busy),
so a slow server cannot slow the load down. Latency is measured from the
moment the request is written to the moment the full response is read;
the generator's own lateness against the schedule is reported apart.

Closed loop: ``concurrency`` connections each send the next request as soon
as the previous answer arrives, for ``duration`` seconds: requests/second
at saturation.

Usage (prints one JSON object):
``python loadgen.py open HOST PORT PATH BODY_FILE RATE SECONDS``
``python loadgen.py closed HOST PORT PATH BODY_FILE CONCURRENCY SECONDS``
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def exchange(conn: Conn, req: bytes) -> int:
    reader, writer = conn
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    length = int(lower[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
    if length:
        await reader.readexactly(length)
    return status


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))]

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": s[-1], "n": len(s)}


async def open_loop(host: str, port: int, req: bytes, rate: float, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    idle: deque[Conn] = deque()
    for _ in range(8):
        idle.append(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    lateness: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = idle.pop() if idle else await asyncio.open_connection(host, port)
        lateness.append(loop.time() - scheduled)
        start = time.perf_counter()
        try:
            status = await asyncio.wait_for(exchange(conn, req), 10)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            errors += 1
            conn[1].close()
            return
        latencies.append(time.perf_counter() - start)
        if status != 200:
            errors += 1
        idle.append(conn)

    # Warm-up (not measured): connections, caches, the sidecar's pool.
    for _ in range(50):
        await one(loop.time())
    latencies.clear()
    lateness.clear()
    total = int(rate * seconds)
    tasks = []
    t0 = loop.time() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - t0
    for _, writer in idle:
        writer.close()
    return {
        "mode": "open",
        "rate": rate,
        "achieved_rps": len(latencies) / elapsed,
        "errors": errors,
        "latency": percentiles(latencies),
        "lateness": percentiles(lateness),
        "samples_us": [round(x * 1e6, 1) for x in latencies],
    }


async def closed_loop(host: str, port: int, req: bytes, concurrency: int, seconds: float) -> dict:
    done = 0
    errors = 0
    stop_at = 0.0

    async def worker() -> None:
        nonlocal done, errors
        conn = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                status = await asyncio.wait_for(exchange(conn, req), 30)
                if status == 200:
                    done += 1
                else:
                    errors += 1
        finally:
            conn[1].close()

    stop_at = time.perf_counter() + 1.0  # warm-up
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = errors = 0
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"mode": "closed", "concurrency": concurrency, "rps": done / elapsed, "errors": errors}


def main(argv: list[str]) -> None:
    mode, host, port, path, body_file, knob, seconds = argv
    req = request_bytes(host, path, Path(body_file).read_bytes())
    if mode == "open":
        result = asyncio.run(open_loop(host, int(port), req, float(knob), float(seconds)))
    else:
        result = asyncio.run(closed_loop(host, int(port), req, int(knob), float(seconds)))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
