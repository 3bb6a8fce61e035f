"""The sidecar's settings and shadow copies cannot be reached from the live traffic port.

The sidecar has no HTTP handler for its settings (a read-only mounted file) or
for shadow copies (it sends them, from the settings' target, and never takes a
target from a request). Its own answers on the live port are the two probes
(/healthz/live, /healthz/ready and their /vigil/ aliases); /metrics lives on
the metrics port, which the live Service does not expose. Whatever else a
client asks for on the live port, however the path is disguised, goes to the
model server and nowhere else; and a request cannot make the sidecar copy
traffic to an address of the client's choosing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.kube import ROOT

from vigil.core import desired as desired_objects
from vigil.core.desired import FEEDBACK_PORT_NAME, METRICS_PORT, SIDECAR_PORT_NAME, Owner
from vigil.devcluster.common import free_port

HERE = Path(__file__).resolve().parent
ADMIN_LOOKING_PATHS = [
    "/metrics",
    "/settings",
    "/config",
    "/vigil/settings",
    "/vigil/config",
    "/vigil/shadow",
    "/shadow",
    "/readyz",
    "/healthz",
    "/debug/pprof",
    "/etc/vigil/sidecar.json",
    "//metrics",
    "/%6Detrics",
    "/metrics?format=text",
    "/healthz/live/../../metrics",
    "/healthz/ready/../../vigil/settings",
    "/vigil/healthz/../settings",
    "/healthz/live%2F..%2F..%2Fmetrics",
    "/HEALTHZ/LIVE",
]


def _request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _raw(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request with the target exactly as written (urllib would normalise it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited: {log.read_text()[-3000:]}")
        try:
            if _request(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer: {log.read_text()[-3000:]}")


def _start(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Stack:
    def __init__(self, live: int, metrics: int, shadow_log: Path, config: Path) -> None:
        self.live, self.metrics, self.shadow_log, self.config = live, metrics, shadow_log, config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Echo model server, echo shadow target, and the real sidecar copying 100% to it."""
    tmp_path = tmp_path_factory.mktemp("live-port")
    model, target, live, metrics = free_port(), free_port(), free_port(), free_port()
    procs = []
    try:
        for port, name in ((model, "model"), (target, "shadow")):
            log = tmp_path / f"{name}.log"
            procs.append(_start([sys.executable, str(HERE / "echo_upstream.py"), str(port)], log))
            _wait(f"http://127.0.0.1:{port}/v2/health/ready", procs[-1], log)
        settings = {
            "model": {"name": "m", "version": "1"},
            "protocol": "v2",
            "upstream": {"url": f"http://127.0.0.1:{model}"},
            "listen": {"host": "127.0.0.1", "port": live},
            "metrics": {"host": "127.0.0.1", "port": metrics},
            "shadow": {"target": f"http://127.0.0.1:{target}", "percent": 100},
        }
        config = tmp_path / "sidecar.json"
        config.write_text(json.dumps(settings))
        log = tmp_path / "sidecar.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        procs.append(
            _start([sys.executable, "-m", "vigil.sidecar.main", "--config", str(config)], log, env)
        )
        _wait(f"http://127.0.0.1:{live}/healthz/ready", procs[-1], log)
        yield Stack(live, metrics, tmp_path / "shadow.log", config)
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _from_model(status: int, headers: dict[str, str], body: bytes) -> dict[str, object]:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "x-vigil-error" not in lowered, (status, body)
    assert lowered.get("x-upstream") == "echo", (status, headers, body[:200])
    return dict(json.loads(body))


@pytest.mark.parametrize("path", ADMIN_LOOKING_PATHS)
def test_admin_looking_paths_on_the_live_port_go_to_the_model(stack: Stack, path: str) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        echoed = _from_model(*_raw(stack.live, path, method))
        assert echoed["path"] == path
        assert echoed["method"] == method


def test_only_the_probes_are_answered_by_the_sidecar_on_the_live_port(stack: Stack) -> None:
    for path in ("/healthz/live", "/healthz/ready", "/vigil/healthz", "/vigil/readyz"):
        status, headers, body = _raw(stack.live, path)
        assert status == 200 and "x-upstream" not in headers, (path, headers)
        assert json.loads(body) in ({"alive": True}, {"ready": True})


def test_a_request_cannot_choose_where_shadow_copies_go(stack: Stack) -> None:
    """Shadow copies go to the configured target only; request headers change nothing."""
    before = stack.config.read_text()
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}
    ).encode()
    for headers in (
        {"X-Vigil-Shadow-Target": "http://127.0.0.1:1/"},
        {"X-Vigil-Shadow": "1"},
        {"X-Vigil-Target": "http://169.254.169.254/"},
        {"Host": "169.254.169.254"},
    ):
        status, got, answer = _request(
            f"http://127.0.0.1:{stack.live}/v2/models/m/infer",
            "POST",
            body,
            {"Content-Type": "application/json", **headers},
        )
        assert status == 200
        _from_model(status, got, answer)
    assert stack.config.read_text() == before
    # The metrics port has no write handlers either.
    for method in ("POST", "PUT", "DELETE"):
        status, _, _ = _raw(stack.metrics, "/metrics", method)
        assert status == 405, (method, status)


def test_live_service_exposes_only_the_sidecars_traffic_and_feedback_ports() -> None:
    # Labels come through the model's Service (docs/howto/feedback.md), on a port
    # of their own: never the model server's port, never the metrics port.
    service = desired_objects.desired_service(Owner("m", "ns", "uid"), "abc1234")
    ports = service["spec"]["ports"]
    assert [p["targetPort"] for p in ports] == [SIDECAR_PORT_NAME, FEEDBACK_PORT_NAME]
    assert all(p.get("port") != METRICS_PORT for p in ports)
