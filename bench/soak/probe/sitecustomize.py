"""A probe the soak benchmark puts on PYTHONPATH of the processes it watches.

Python 3.11 offers no way to count another process's asyncio tasks from
outside, so when ``VIGIL_BENCH_PROBE_DIR`` is set this module (imported at
interpreter start as ``sitecustomize``) starts a daemon thread that writes,
every 10 seconds, ``<dir>/<pid>.json`` with the number of pending asyncio
tasks (all event loops) and the number of objects the GC tracks. It reads
only; the measured process runs unchanged otherwise.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time


def _pending_tasks() -> int:
    import asyncio.tasks

    for _ in range(10):  # the set may change while another thread iterates it
        try:
            return sum(1 for task in list(asyncio.tasks._all_tasks) if not task.done())
        except RuntimeError:
            time.sleep(0.01)
    return -1


def _top_allocations(limit: int = 40) -> list[str]:
    import tracemalloc

    if not tracemalloc.is_tracing():
        return []
    stats = tracemalloc.take_snapshot().statistics("lineno")
    return [f"{stat.size / 1024:.0f} KiB {stat.count} {stat.traceback}" for stat in stats[:limit]]


def _run(folder: str) -> None:
    path = os.path.join(folder, f"{os.getpid()}.json")
    while True:
        time.sleep(10)
        try:
            top = _top_allocations()
            if top:  # VIGIL_BENCH_TRACEMALLOC: where the memory is, by source line
                with open(os.path.join(folder, f"{os.getpid()}.tracemalloc.txt"), "w") as out:
                    out.write("\n".join(top) + "\n")
            record = {
                "at": time.time(),
                "tasks": _pending_tasks(),
                "gc_objects": len(gc.get_objects()),
            }
            tmp = path + ".tmp"
            with open(tmp, "w") as handle:
                # json.dumps (the C encoder): json.dump's pure-Python encoder leaves
                # 32 objects in reference cycles per call, which the soak then counted
                # as the watched process's growth.
                handle.write(json.dumps(record))
            os.replace(tmp, path)
        except Exception:  # a probe never harms the process it watches
            pass


_folder = os.environ.get("VIGIL_BENCH_PROBE_DIR")
if _folder and os.environ.get("VIGIL_BENCH_TRACEMALLOC"):
    import tracemalloc

    tracemalloc.start(1)
if _folder:
    threading.Thread(target=_run, args=(_folder,), name="vigil-bench-probe", daemon=True).start()
