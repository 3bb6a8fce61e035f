"""Processes and a raw HTTP client for the sidecar fuzz tests.

The client speaks bytes over a socket (no HTTP library) because half the cases
are requests no library would send: it writes the case as given, reads every
answer it expects, and reports what came back: statuses, a clean close, a
reset, or nothing at all (a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from payload_cases import Case
from prometheus_client.parser import text_string_to_metric_families

from vigil.devcluster.common import free_port

REPO = Path(__file__).resolve().parents[3]
UPSTREAM_SCRIPT = Path(__file__).with_name("fuzz_upstream.py")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError):
            if http_get(url, timeout=2)[0] == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not answering 200 after {timeout:.0f}s:\n{tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def upstream_process(work: Path) -> Iterator[int]:
    """The fuzz upstream (aiohttp) on a free port; yields the port."""
    port = free_port()
    log = work / "upstream.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM_SCRIPT), str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_ok(f"http://127.0.0.1:{port}/v2/health/ready", proc, log)
        yield port
    finally:
        stop(proc)


@dataclass
class SidecarProcess:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert status == 200, body
        out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out


def metric(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@contextlib.contextmanager
def sidecar_process(work: Path, settings: dict[str, Any]) -> Iterator[SidecarProcess]:
    """The real ``vigil-sidecar`` (same module the pods run) with a settings file."""
    port, mport = free_port(), free_port()
    doc = {
        **settings,
        "listen": {"host": "127.0.0.1", "port": port, **settings.get("listen", {})},
        "metrics": {"host": "127.0.0.1", "port": mport},
    }
    config = work / "sidecar.json"
    config.write_text(json.dumps(doc))
    log = work / "sidecar.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    env.pop("VIGIL_SIDECAR_CONFIG", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.sidecar.main", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_ok(f"http://127.0.0.1:{port}/healthz/ready", proc, log)
        yield SidecarProcess(proc, port, mport, log)
    finally:
        stop(proc)


# -- the raw client ---------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    statuses: list[int] = field(default_factory=list)
    closed: bool = False
    problem: str = ""

    @property
    def ok(self) -> bool:
        if self.problem:
            return False
        want = self.case.answers
        if len(self.statuses) == len(want):
            return all(s in w for s, w in zip(self.statuses, want, strict=True))
        return self.case.may_close and not self.statuses and self.closed

    def describe(self) -> str:
        expected = [sorted(w) for w in self.case.answers]
        return (
            f"{self.case.name}: got {self.statuses} closed={self.closed} {self.problem} "
            f"(expected {expected}{' or a clean close' if self.case.may_close else ''}); "
            f"request starts {self.case.raw[:160]!r}"
        )


async def _send(writer: asyncio.StreamWriter, case: Case) -> None:
    raw = case.raw
    try:
        if case.split_at is not None:
            writer.write(raw[: case.split_at])
            await writer.drain()
            await asyncio.sleep(0.02)
            raw = raw[case.split_at :]
        for i in range(0, len(raw), 65536):
            writer.write(raw[i : i + 65536])
            await writer.drain()
        if case.half_close and writer.can_write_eof():
            writer.write_eof()
    except (ConnectionResetError, BrokenPipeError):
        pass  # the sidecar answered early (413, 400) and closed: the reader says what came


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def run_case(port: int, case: Case, timeout: float) -> Outcome:
    """Send one case, read every answer it expects (or the close)."""
    outcome = Outcome(case)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    except OSError as exc:
        outcome.problem = f"cannot connect: {exc}"
        return outcome
    sender = asyncio.create_task(_send(writer, case))
    try:
        while len(outcome.statuses) < len(case.answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = int(head[9:12])
            if status == 100:
                continue
            await asyncio.wait_for(reader.readexactly(_content_length(head)), timeout)
            outcome.statuses.append(status)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            outcome.problem = f"connection closed inside an answer: {exc.partial[:80]!r}"
        else:
            outcome.closed = True
    except ConnectionResetError:
        outcome.problem = "connection reset (no clean close)"
    except TimeoutError:
        outcome.problem = f"no answer and no close within {timeout:.0f}s (hang)"
    except ValueError as exc:
        outcome.problem = f"not an HTTP answer: {exc}"
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        writer.close()  # not awaited: a reset while closing says nothing about the answer
    return outcome


async def run_all(port: int, cases: list[Case], concurrency: int, timeout: float) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> Outcome:
        async with gate:
            return await run_case(port, case, timeout)

    return list(await asyncio.gather(*(one(c) for c in cases)))
