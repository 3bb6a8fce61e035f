"""1 GB artifact fetch: vigil-fetch against curl, over http and from SeaweedFS's S3, on 127.0.0.1.

For each source, rounds alternate curl, vigil-fetch, curl then sha256sum,
and vigil-fetch with --sha256 (same file, same server, the output deleted and the page cache's
dirty pages written back between runs, outside the timing). Time is the
whole process, start-up included, as an init container spends it; peak RSS
is GNU time's maximum resident set size. Results: bench/fetch/results/*.json
and a markdown table on stdout.

    .venv/bin/python bench/fetch/run.py [--size-mib 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from vigil.devcluster.common import free_port
from vigil.devcluster.seaweedfs import READER, put_object, running_store

HERE = Path(__file__).resolve().parent
FETCHER = Path(sys.executable).parent / "vigil-fetch"
TIME = "/usr/bin/time"
LABELS = ("curl", "vigil-fetch", "curl + sha256sum", "vigil-fetch --sha256")
BLOCK = 1 << 20


def make_artifact(path: Path, size_mib: int) -> str:
    """Random (incompressible) data; returns its sha256."""
    digest = hashlib.sha256()
    block = os.urandom(BLOCK)
    with path.open("wb") as out:
        for index in range(size_mib):
            # Vary each block a little so no layer can deduplicate them.
            chunk = index.to_bytes(8, "little") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def timed(command: list[str], env: dict[str, str], work: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one process.

    The peak comes from GNU time (``%M``): a child forked from this Python
    process would count this process's pages in its own ``ru_maxrss``.
    """
    report = work / "time.txt"
    started = time.monotonic()
    done = subprocess.run(
        [TIME, "-f", "%M", "-o", str(report), *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, int(report.read_text().split()[-1]) / 1024


def reset(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.sync()


def run_source(
    name: str,
    curl: list[str],
    fetch: list[str],
    env: dict[str, str],
    digest: str,
    work: Path,
    rounds: int,
    size: int,
) -> dict[str, object]:
    out = work / "out"
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in LABELS}
    saved = out / "artifact.bin"
    # The baseline of a verified fetch: curl, then sha256sum of what it wrote.
    curl_then_hash = ["sh", "-c", '"$@" -o "$0" && sha256sum "$0" >/dev/null', str(saved), *curl]
    for round_index in range(rounds):
        for label, command in (
            ("curl", [*curl, "-o", str(saved)]),
            ("vigil-fetch", [*fetch, "--dest", str(out)]),
            ("curl + sha256sum", curl_then_hash),
            ("vigil-fetch --sha256", [*fetch, "--dest", str(out), "--sha256", digest]),
        ):
            reset(out)
            seconds, rss = timed(command, env, work)
            fetched = next(p for p in out.iterdir() if not p.name.startswith("."))
            if fetched.stat().st_size != size:
                raise RuntimeError(f"{label} wrote {fetched.stat().st_size} bytes, not {size}")
            samples[label].append((seconds, rss))
            print(
                f"  {name} round {round_index + 1} {label}: {seconds:.2f} s, {rss:.1f} MiB",
                flush=True,
            )
    reset(out)
    summary: dict[str, object] = {}
    curl_median = statistics.median(s for s, _ in samples["curl"])
    for label, values in samples.items():
        times = [s for s, _ in values]
        median = statistics.median(times)
        summary[label] = {
            "seconds": times,
            "median_seconds": median,
            "mb_per_s": size / median / 1e6,
            "vs_curl": median / curl_median,
            "vs_curl_sha256sum": median
            / statistics.median(s for s, _ in samples["curl + sha256sum"]),
            "peak_rss_mib": max(r for _, r in values),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not FETCHER.exists():
        sys.exit(f"{FETCHER} missing: run make install")
    if shutil.which("curl") is None:
        sys.exit("curl is the baseline: apt-get install curl")
    if not Path(TIME).exists():
        sys.exit("GNU time measures the peak RSS: apt-get install time")
    size = args.size_mib * BLOCK
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-fetch-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        source = work / "files"
        source.mkdir()
        artifact = source / "artifact.bin"
        print(f"making a {args.size_mib} MiB artifact ...", flush=True)
        digest = make_artifact(artifact, args.size_mib)
        results: dict[str, object] = {}

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(HERE / "file_server.py"), str(source), str(port)]
        )
        try:
            url = f"http://127.0.0.1:{port}/files/artifact.bin"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url.replace("artifact.bin", "missing"), timeout=1)
                except urllib.error.HTTPError:
                    break
                except OSError:
                    time.sleep(0.1)
            print("http:", flush=True)
            results["http"] = run_source(
                "http", ["curl", "-sS", "--fail", url], [str(FETCHER), url], dict(os.environ),
                digest, work, args.rounds, size,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)

        with running_store(work / "seaweedfs") as store:
            print("uploading to SeaweedFS ...", flush=True)
            put_object(store, "models", "bench/artifact.bin", artifact)
            artifact.unlink()  # the store holds its own copy
            object_url = f"{store.endpoint}/models/bench/artifact.bin"
            env = {
                **os.environ,
                "AWS_ENDPOINT_URL_S3": store.endpoint,
                "AWS_ACCESS_KEY_ID": READER.access_key,
                "AWS_SECRET_ACCESS_KEY": READER.secret_key,
            }
            curl = [
                "curl", "-sS", "--fail", "--aws-sigv4", "aws:amz:us-east-1:s3",
                "--user", f"{READER.access_key}:{READER.secret_key}",
                "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", object_url,
            ]  # fmt: skip
            print("s3:", flush=True)
            results["s3"] = run_source(
                "s3", curl, [str(FETCHER), "s3://models/bench/artifact.bin"], env,
                digest, work, args.rounds, size,
            )  # fmt: skip

    report = {
        "started": started.isoformat(timespec="seconds"),
        "size_bytes": size,
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
        .split("\n")[0],
        "results": results,
    }  # fmt: skip
    folder = HERE / "results"
    folder.mkdir(exist_ok=True)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    (folder / f"{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(f"{args.size_mib} MiB, {args.rounds} rounds, {report['started']}, "
          f"load {load_before[0]:.1f} -> {report['load_after'][0]:.1f}")  # fmt: skip
    print("| source | tool | median s | MB/s | vs curl | vs curl + sha256sum | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for source_name, summary in results.items():
        assert isinstance(summary, dict)
        for label, row in summary.items():
            print(
                f"| {source_name} | {label} | {row['median_seconds']:.2f} | {row['mb_per_s']:.0f}"
                f" | {row['vs_curl']:.2f}x | {row['vs_curl_sha256sum']:.2f}x"
                f" | {row['peak_rss_mib']:.1f} |"
            )


if __name__ == "__main__":
    main()
