"""Sidecar benchmark: added latency, throughput share, CPU and memory.

Not a test: it measures and prints a table (and writes ``last-run.json``).
Everything runs on loopback as separate processes, the same load generator
for "direct" and "through the sidecar", alternating in the same run.

1. Added latency against a trivially fast v2 server (trivial_upstream.py),
   open loop at fixed rates (default 100, 200, 500 rps): sidecar minus
   direct at p50/p90/p99. The sidecar runs with a wine reference profile,
   so monitoring (parsing, binning) is on, and with feedback on (every
   prediction kept in the join store), as in production. ``--baseline
   <checkout>/operator`` runs a second sidecar from another checkout in
   the same slices (the cost of a change, measured side by side).
2. Saturated throughput against MLServer serving the wine model (closed
   loop): requests/second through the sidecar as a share of direct.
3. The sidecar's CPU seconds per 1000 requests/second (from /proc during
   the fixed-rate runs) and its resident memory (VmRSS, peak VmHWM).

4. Payload width and shadow copying (the "matrix"): payloads of 1, 32 and
   256 features (a generated reference profile with that many features,
   all monitored, and one-row v2 requests of that width), each through a
   sidecar with shadow copying off and one with it on (percent 100, target:
   a second trivial upstream), at one fixed rate (default 200 rps):
   added p50/p90/p99 against direct, sidecar vCPU per 1000 rps and RSS.

Direct and sidecar runs alternate in short slices (default 10 x 2 s per
path and rate) and the latency samples are pooled, so that both paths see
the same mix of quiet and busy moments on a shared machine.

Usage: ``python bench/sidecar/run.py [--seconds 2] [--reps 10] [--rates 100,200,500]``;
``--only-matrix`` runs only part 4 (``--widths 1,32,256 --matrix-rate 200``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from vigil.devcluster.common import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MLSERVER_BIN = REPO / ".venv-mlserver" / "bin" / "mlserver"
TICK = os.sysconf("SC_CLK_TCK")


def wait_ok(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{url} not ready after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024.0  # MiB
    return out


def pooled(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        q: s[min(len(s) - 1, int(p * len(s)))]
        for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    }


def loadgen(*args: Any) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


class Procs:
    """Processes started by the benchmark; all stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """Wine model, reference profile and a one-row v2 request body."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sys.path.insert(0, str(REPO / "operator"))
    from vigil.profile import build_profile

    data = load_wine()
    x, y = np.asarray(data.data, dtype=float), data.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    joblib.dump(model, work / "model.joblib")
    names = [n.replace("/", "_") for n in data.feature_names]
    profile = build_profile(
        x, predictions=model.predict(x), feature_names=names, model_name="wine", model_version="1"
    )
    (work / "profile.json").write_text(profile.to_json())
    body = json.dumps(
        {
            "inputs": [
                {"name": "input-0", "shape": [1, 13], "datatype": "FP64", "data": x[0].tolist()}
            ]
        }
    ).encode()
    (work / "body.json").write_bytes(body)
    return work / "model.joblib", work / "profile.json", work / "body.json"


def start_sidecar(
    procs: Procs,
    work: Path,
    name: str,
    upstream: int,
    profile: Path,
    event_loop: str,
    *,
    config: Path | None = None,
    metrics_port: int | None = None,
    max_features: int | None = None,
    code: Path | None = None,
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start one sidecar; ``config`` holds what has no flag (shadow, feedback).

    ``code``: another checkout's ``operator`` folder to run the sidecar from
    (a baseline measured in the same run).
    """
    port, mport = free_port(), metrics_port or free_port()
    env = {**os.environ, "PYTHONPATH": str(code or REPO / "operator")}
    env.pop("VIGIL_SIDECAR_CONFIG", None)
    extra = ["--config", str(config)] if config is not None else []
    if max_features is not None:
        extra += ["--max-features", str(max_features)]
    proc = procs.start(
        [
            sys.executable,
            "-m",
            "vigil.sidecar.main",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(mport),
            "--upstream",
            f"http://127.0.0.1:{upstream}",
            "--protocol",
            "v2",
            "--model-name",
            "wine",
            "--model-version",
            "1",
            "--revision",
            "bench",
            "--reference-profile",
            str(profile),
            "--event-loop",
            event_loop,
            *extra,
        ],
        work / f"{name}.log",
        env=env,
    )
    wait_ok(f"http://127.0.0.1:{port}/healthz/ready", proc, 30)
    return port, proc


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {"python": platform.python_version()}
    for mod in ("aiohttp", "prometheus_client", "numpy", "uvloop"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            try:
                from importlib.metadata import version

                versions[mod] = version(mod.replace("_", "-"))
            except Exception:
                versions[mod] = "not installed"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
    }


def latency_phase(
    procs: Procs,
    work: Path,
    profile: Path,
    body: Path,
    rates: list[float],
    seconds: float,
    reps: int,
    event_loop: str,
    baseline: Path | None = None,
) -> dict[str, Any]:
    up_port = free_port()
    up = procs.start(
        [sys.executable, str(HERE / "trivial_upstream.py"), str(up_port)], work / "trivial.log"
    )
    wait_ok(f"http://127.0.0.1:{up_port}/v2/health/ready", up, 15)
    # Feedback on, as the operator's pods run: every prediction kept in the join store.
    feedback = work / "feedback.json"
    feedback.write_text(
        json.dumps({"feedback": {"enabled": True, "host": "127.0.0.1", "port": free_port()}})
    )
    sc_port, sc = start_sidecar(
        procs, work, "sidecar-trivial", up_port, profile, event_loop, config=feedback
    )
    base = None
    if baseline is not None:
        base = start_sidecar(
            procs, work, "sidecar-baseline", up_port, profile, event_loop, code=baseline
        )
    path = "/v2/models/wine/infer"
    results = []
    for rate in rates:
        # Short slices, alternating direct and sidecar, samples pooled: both
        # paths see the same mix of quiet and busy moments of a shared machine.
        direct: list[float] = []
        through: list[float] = []
        before: list[float] = []
        base_cpu_s = 0.0
        cpu_s = 0.0
        requests = 0
        errors = 0
        lateness = 0.0
        achieved = []
        for _ in range(reps):
            d = loadgen("open", "127.0.0.1", up_port, path, body, rate, seconds)
            c0 = cpu_seconds(sc.pid)
            t = loadgen("open", "127.0.0.1", sc_port, path, body, rate, seconds)
            # CPU over the whole run, incl. the 50 warm-up requests.
            cpu_s += cpu_seconds(sc.pid) - c0
            if base is not None:
                b0 = cpu_seconds(base[1].pid)
                before += loadgen("open", "127.0.0.1", base[0], path, body, rate, seconds)[
                    "samples_us"
                ]
                base_cpu_s += cpu_seconds(base[1].pid) - b0
            requests += t["latency"]["n"] + 50
            direct += d["samples_us"]
            through += t["samples_us"]
            errors += d["errors"] + t["errors"]
            lateness = max(lateness, d["lateness"]["p99"], t["lateness"]["p99"])
            achieved.append(t["achieved_rps"])
        pd, pt = pooled(direct), pooled(through)
        row: dict[str, Any] = {"rate": rate, "samples": [len(direct), len(through)]}
        for q in ("p50", "p90", "p99"):
            row[f"direct_{q}_ms"] = pd[q] / 1e3
            row[f"sidecar_{q}_ms"] = pt[q] / 1e3
            row[f"added_{q}_ms"] = (pt[q] - pd[q]) / 1e3
        row["sidecar_cpu_ms_per_request"] = cpu_s / requests * 1e3
        row["sidecar_vcpu_per_1000rps"] = cpu_s / requests * 1000
        if before:
            pb = pooled(before)
            for q in ("p50", "p90", "p99"):
                row[f"baseline_{q}_ms"] = pb[q] / 1e3
                row[f"baseline_added_{q}_ms"] = (pb[q] - pd[q]) / 1e3
            row["baseline_vcpu_per_1000rps"] = base_cpu_s / requests * 1000
        row["errors"] = errors
        row["achieved_rps"] = statistics.median(achieved)
        row["loadgen_lateness_p99_ms"] = lateness * 1e3
        results.append(row)
        print(json.dumps(row), flush=True)
    out: dict[str, Any] = {"rows": results, "memory_mib": memory(sc.pid)}
    if base is not None:
        out["baseline_memory_mib"] = memory(base[1].pid)
    return out


def throughput_phase(
    procs: Procs,
    work: Path,
    model: Path,
    profile: Path,
    body: Path,
    seconds: float,
    reps: int,
    concurrency: int,
    event_loop: str,
) -> dict[str, Any]:
    if not MLSERVER_BIN.exists():
        raise SystemExit(f"{MLSERVER_BIN} missing: run `make install`")
    root = work / "mlserver"
    (root / "wine").mkdir(parents=True)
    (root / "wine" / "model.joblib").write_bytes(model.read_bytes())
    (root / "wine" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "wine",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    port = free_port()
    (root / "settings.json").write_text(
        json.dumps(
            {
                "debug": False,
                "parallel_workers": 0,
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "metrics_dir": str(root / ".metrics"),
            }
        )
    )
    env = {**os.environ}
    env.pop("VIRTUAL_ENV", None)
    ml = procs.start(
        [str(MLSERVER_BIN), "start", str(root)], work / "mlserver.log", cwd=root, env=env
    )
    wait_ok(f"http://127.0.0.1:{port}/v2/models/wine/ready", ml, 180)
    sc_port, sc = start_sidecar(procs, work, "sidecar-mlserver", port, profile, event_loop)
    path = "/v2/models/wine/infer"
    direct, through = [], []
    c0 = cpu_seconds(sc.pid)
    for _ in range(reps):
        direct.append(loadgen("closed", "127.0.0.1", port, path, body, concurrency, seconds))
        through.append(loadgen("closed", "127.0.0.1", sc_port, path, body, concurrency, seconds))
    # Alternating short slices; the share is pooled over all of them, and each
    # slice pair's share is kept to show the spread on a shared machine.
    d = sum(r["rps"] for r in direct) / reps
    s = sum(r["rps"] for r in through) / reps
    pairs = [t["rps"] / x["rps"] for x, t in zip(direct, through, strict=True)]
    result = {
        "direct_rps": d,
        "sidecar_rps": s,
        "share": s / d,
        "median_pair_share": statistics.median(pairs),
        "pair_shares": pairs,
        "concurrency": concurrency,
        "runs_direct": [r["rps"] for r in direct],
        "runs_sidecar": [r["rps"] for r in through],
        "sidecar_cpu_seconds": cpu_seconds(sc.pid) - c0,
        "memory_mib": memory(sc.pid),
        "errors": sum(r["errors"] for r in direct + through),
    }
    print(json.dumps(result), flush=True)
    return result


def wide_profile(work: Path, width: int) -> tuple[Path, Path]:
    """A generated reference profile with ``width`` numeric features and a one-row body.

    The data are standard normal (seeded), the predictions three classes,
    so the sidecar bins every feature and counts a class per answer, as
    with a real model of that width. The request row comes from the same
    distribution, so its values fall in the reference's bins.
    """
    import numpy as np

    sys.path.insert(0, str(REPO / "operator"))
    from vigil.profile import build_profile

    rng = np.random.default_rng(width)
    x = rng.normal(size=(2000, width))
    names = [f"f{i:03d}" for i in range(width)]
    profile = build_profile(
        x,
        predictions=rng.integers(0, 3, len(x)),
        feature_names=names,
        model_name="wine",
        model_version="1",
    )
    path = work / f"profile-{width}.json"
    path.write_text(profile.to_json())
    row = [round(float(v), 6) for v in rng.normal(size=width)]
    body = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, width], "datatype": "FP64", "data": row}]}
    ).encode()
    body_path = work / f"body-{width}.json"
    body_path.write_bytes(body)
    return path, body_path


def scrape(port: int) -> dict[str, float]:
    """The sidecar's /metrics as {'name{labels}': value} (shadow outcome counts)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def shadow_counts(port: int) -> dict[str, float]:
    counts: dict[str, float] = {}
    for key, value in scrape(port).items():
        if key.startswith("vigil_shadow_requests_total{"):
            outcome = key.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = counts.get(outcome, 0.0) + value
        elif key.startswith("vigil_shadow_dropped_total{"):
            counts["dropped"] = counts.get("dropped", 0.0) + value
    return counts


def matrix_phase(
    procs: Procs,
    work: Path,
    widths: list[int],
    rate: float,
    seconds: float,
    reps: int,
    event_loop: str,
) -> dict[str, Any]:
    """Payload width x shadow copying, each against direct in the same slices.

    Per width: one trivial upstream (the model), a second one (the shadow
    target), a sidecar with shadow copying off and one with it on (percent
    100); every feature monitored (``--max-features`` = width; the default
    cap of 20 would leave most of a 256-wide payload unbinned). Each slice
    runs direct, shadow off and shadow on one after the other, so the three
    paths share the machine's quiet and busy moments; samples are pooled.
    """
    path = "/v2/models/wine/infer"
    rows = []
    for width in widths:
        profile, body = wide_profile(work, width)
        up_port, shadow_port = free_port(), free_port()
        for port, label in ((up_port, "model"), (shadow_port, "shadow")):
            proc = procs.start(
                [sys.executable, str(HERE / "trivial_upstream.py"), str(port)],
                work / f"trivial-{label}-{width}.log",
            )
            wait_ok(f"http://127.0.0.1:{port}/v2/health/ready", proc, 15)
        config = work / f"shadow-{width}.json"
        config.write_text(
            json.dumps(
                {
                    "shadow": {
                        "target": f"http://127.0.0.1:{shadow_port}",
                        "targetRevision": "bench-shadow",
                        "percent": 100,
                    }
                }
            )
        )
        sidecars: dict[str, tuple[int, int, subprocess.Popen[bytes]]] = {}
        for mode, cfg in (("off", None), ("on", config)):
            mport = free_port()
            port, proc = start_sidecar(
                procs,
                work,
                f"sidecar-{width}-{mode}",
                up_port,
                profile,
                event_loop,
                config=cfg,
                metrics_port=mport,
                max_features=width,
            )
            sidecars[mode] = (port, mport, proc)
        before = shadow_counts(sidecars["on"][1])
        direct: list[float] = []
        samples: dict[str, list[float]] = {"off": [], "on": []}
        cpu = {"off": 0.0, "on": 0.0}
        requests = {"off": 0, "on": 0}
        errors = 0
        lateness = 0.0
        for _ in range(reps):
            d = loadgen("open", "127.0.0.1", up_port, path, body, rate, seconds)
            direct += d["samples_us"]
            errors += d["errors"]
            lateness = max(lateness, d["lateness"]["p99"])
            for mode in ("off", "on"):
                port, _, proc = sidecars[mode]
                c0 = cpu_seconds(proc.pid)
                t = loadgen("open", "127.0.0.1", port, path, body, rate, seconds)
                # Shadow copies leave after the answer: let the last ones finish
                # so that their CPU is counted (the same pause for both modes).
                time.sleep(0.3)
                cpu[mode] += cpu_seconds(proc.pid) - c0
                requests[mode] += t["latency"]["n"] + 50  # incl. the 50 warm-up requests
                samples[mode] += t["samples_us"]
                errors += t["errors"]
                lateness = max(lateness, t["lateness"]["p99"])
        after = shadow_counts(sidecars["on"][1])
        pd = pooled(direct)
        for mode in ("off", "on"):
            pt = pooled(samples[mode])
            row: dict[str, Any] = {
                "width": width,
                "shadow": mode,
                "rate": rate,
                "samples": [len(direct), len(samples[mode])],
                "request_bytes": body.stat().st_size,
            }
            for q in ("p50", "p90", "p99"):
                row[f"direct_{q}_ms"] = pd[q] / 1e3
                row[f"sidecar_{q}_ms"] = pt[q] / 1e3
                row[f"added_{q}_ms"] = (pt[q] - pd[q]) / 1e3
            row["sidecar_cpu_ms_per_request"] = cpu[mode] / requests[mode] * 1e3
            row["sidecar_vcpu_per_1000rps"] = cpu[mode] / requests[mode] * 1000
            row["memory_mib"] = memory(sidecars[mode][2].pid)
            if mode == "on":
                row["shadow_copies"] = {
                    k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(after)
                }
                row["requests_sent"] = requests[mode]
            row["errors"] = errors
            row["loadgen_lateness_p99_ms"] = lateness * 1e3
            row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            rows.append(row)
            print(json.dumps(row), flush=True)
        procs.stop_all()
        procs.procs.clear()
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one slice")
    parser.add_argument("--reps", type=int, default=10, help="slices per path and rate")
    parser.add_argument("--rates", default="100,200,500")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--event-loop", default="auto", choices=("auto", "uvloop", "asyncio"))
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-matrix", action="store_true", help="no width x shadow runs")
    parser.add_argument("--only-matrix", action="store_true", help="only the width x shadow runs")
    parser.add_argument("--widths", default="1,32,256", help="payload widths (features)")
    parser.add_argument("--matrix-rate", type=float, default=200.0, help="rps of the matrix")
    parser.add_argument("--out", default=str(HERE / "last-run.json"))
    parser.add_argument(
        "--baseline",
        help="another checkout's operator/ folder: its sidecar runs beside, in the same slices",
    )
    args = parser.parse_args()
    if args.only_matrix:
        args.skip_latency = args.skip_mlserver = True
    procs = Procs()
    report: dict[str, Any] = {"machine": machine(), "event_loop": args.event_loop}
    print(json.dumps(report["machine"]), flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
            work = Path(tmp)
            model, profile, body = prepare(work)
            if not args.skip_latency:
                report["latency"] = latency_phase(
                    procs,
                    work,
                    profile,
                    body,
                    [float(r) for r in args.rates.split(",")],
                    args.seconds,
                    args.reps,
                    args.event_loop,
                    Path(args.baseline) if args.baseline else None,
                )
            procs.stop_all()
            procs.procs.clear()
            if not args.skip_mlserver:
                report["throughput"] = throughput_phase(
                    procs,
                    work,
                    model,
                    profile,
                    body,
                    args.seconds,
                    args.reps,
                    args.concurrency,
                    args.event_loop,
                )
            procs.stop_all()
            procs.procs.clear()
            if not args.skip_matrix:
                report["matrix"] = matrix_phase(
                    procs,
                    work,
                    [int(w) for w in args.widths.split(",")],
                    args.matrix_rate,
                    args.seconds,
                    args.reps,
                    args.event_loop,
                )
    finally:
        procs.stop_all()
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def print_table(report: dict[str, Any]) -> None:
    if report.get("latency"):
        print_latency(report)
    print_rest(report)


def print_latency(report: dict[str, Any]) -> None:
    print(
        "\n| rate (rps) | direct p50/p90/p99 (ms) | sidecar p50/p90/p99 (ms) | added p50 | added "
        "p90 | added p99 | sidecar vCPU per 1000 rps |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in report.get("latency", {}).get("rows", []):
        print(
            f"| {r['rate']:.0f} | {r['direct_p50_ms']:.2f} / {r['direct_p90_ms']:.2f} / "
            f"{r['direct_p99_ms']:.2f} | {r['sidecar_p50_ms']:.2f} / {r['sidecar_p90_ms']:.2f}"
            f" / {r['sidecar_p99_ms']:.2f} | {r['added_p50_ms']:.2f} | {r['added_p90_ms']:.2f}"
            f" | {r['added_p99_ms']:.2f} | {r['sidecar_vcpu_per_1000rps']:.2f} |"
        )
    mem = report.get("latency", {}).get("memory_mib", {})
    print(
        f"\nsidecar memory after the latency runs: RSS {mem.get('VmRSS', 0):.1f} MiB, "
        f"peak {mem.get('VmHWM', 0):.1f} MiB"
    )


def print_rest(report: dict[str, Any]) -> None:
    t = report.get("throughput")
    if t:
        print(
            f"MLServer saturated (closed loop, {t['concurrency']} connections): direct "
            f"{t['direct_rps']:.0f} rps, through the sidecar {t['sidecar_rps']:.0f} rps; "
            f"share {t['share'] * 100:.1f} % (per slice pair: "
            + ", ".join(f"{p * 100:.0f}" for p in t["pair_shares"])
            + f"); sidecar peak RSS {t['memory_mib'].get('VmHWM', 0):.1f} MiB"
        )
    rows = report.get("matrix", {}).get("rows", [])
    if rows:
        print(
            "\n| features | shadow | request bytes | direct p50/p90/p99 (ms) | added p50 "
            "| added p90 | added p99 | sidecar vCPU per 1000 rps | RSS / peak (MiB) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            mem = r["memory_mib"]
            print(
                f"| {r['width']} | {r['shadow']} | {r['request_bytes']} | "
                f"{r['direct_p50_ms']:.2f} / {r['direct_p90_ms']:.2f} / {r['direct_p99_ms']:.2f}"
                f" | {r['added_p50_ms']:.2f} | {r['added_p90_ms']:.2f} | {r['added_p99_ms']:.2f}"
                f" | {r['sidecar_vcpu_per_1000rps']:.2f} | {mem.get('VmRSS', 0):.1f} / "
                f"{mem.get('VmHWM', 0):.1f} |"
            )
        for r in rows:
            if "shadow_copies" in r:
                print(
                    f"{r['width']} features, shadow on: copies by outcome {r['shadow_copies']} "
                    f"for {r['requests_sent']} requests"
                )


if __name__ == "__main__":
    main()
