"""Whether a process waits for a held flock: the kernel lists each waiter in /proc/locks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path


def queued_behind(locks: Iterable[Path], gave_up: Callable[[], bool], timeout: float = 20) -> bool:
    """Whether a flock of one of ``locks`` gets queued (``->`` in /proc/locks) before
    ``gave_up()``.

    Waiting for the queue, not for a while, tells a waiter from one merely slow to get there.
    """
    inodes = [f":{lock.stat().st_ino} " for lock in locks]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not gave_up():
        with open("/proc/locks") as table:
            if any("->" in line and any(i in line for i in inodes) for line in table):
                return True
        time.sleep(0.01)
    return False
