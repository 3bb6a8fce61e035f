"""Bounded waits: every one ends in time or fails saying what it saw last.

``wait_for`` polls anything; ``wait_settled`` reads until two reads agree;
``wait_status`` polls a ModelDeployment's status;
``watch_until`` also records, at each look, what a rollout went through and
what live traffic could reach (a ``Watch``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from kit.kube import REVISION_LABEL, Kube, safe
from kit.status import Done, Status, candidate, candidate_gates, describe, read_status, stable

T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.5,
    what: str | Callable[[], str] = "",
) -> T:
    """Poll until ``check()`` returns something truthy, and return it.

    On timeout the test fails with ``what`` (a callable is asked then, so the
    message can show the last state seen) and the last value checked.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    said = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {said} (last: {last!r})")


def wait_settled(
    read: Callable[[], T], *, apart: float = 1.0, timeout: float = 30.0, what: str = ""
) -> T:
    """``read()`` once two reads ``apart`` seconds apart agree: a snapshot that late writes
    (a controller's status update, an operator's last cycle) no longer move."""
    reads: list[T] = [read()]

    def agreed() -> bool:
        time.sleep(apart)
        reads[:] = [reads[-1], read()]
        return reads[0] == reads[1]

    wait_for(agreed, timeout=timeout, interval=0, what=lambda: f"{what} to settle: {reads}")
    return reads[-1]


def wait_status(kube: Kube, done: Done, timeout: float, what: str, name: str = "wine") -> Status:
    """Poll the status until ``done(status)``; return that status."""
    last: Status = {}

    def look() -> Status | None:
        nonlocal last
        current = read_status(kube, name)
        if not current:
            return None  # the API server did not answer: nothing new seen
        last = current
        return current if done(current) else None

    found = wait_for(look, timeout=timeout, what=lambda: f"{what}; last seen:\n{describe(last)}")
    assert found is not None
    return found


@dataclass
class Watch:
    """What was seen while polling a ModelDeployment and the Service live traffic uses."""

    #: Steps and candidate reasons, each as it changed.
    steps: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    #: Stable revisions, each as it changed.
    stables: list[str] = field(default_factory=list)
    #: Agreement values the candidate's status showed.
    agreements: list[float] = field(default_factory=list)
    #: A candidate had shadow copies; the Service spanned revisions (canary traffic).
    shadowed: bool = False
    spanned: bool = False
    #: Looks at which the Service selected no Ready pod, and the status at each.
    no_ready_pods: int = 0
    without_ready_pods: list[str] = field(default_factory=list)
    observations: int = 0
    last: Status = field(default_factory=dict)

    def see(self, kube: Kube, name: str = "wine") -> Status:
        """One look at the status and the Service; the status (the last one if unread)."""
        current = read_status(kube, name)
        if not current:
            return self.last  # the API server did not answer: nothing new seen
        self.last = current
        self.observations += 1
        now = candidate(current)
        _append_changed(self.steps, now.get("stepName"))
        _append_changed(self.reasons, now.get("reason"))
        _append_changed(self.stables, stable(current).get("revision"))
        agreement = candidate_gates(current).get("agreement") or {}
        if agreement.get("value") is not None:
            self.agreements.append(float(agreement["value"]))
        if now.get("shadowPercent"):
            self.shadowed = True
        view = safe(lambda: kube.service_view(name), None)
        if view is not None:
            if view.selector and REVISION_LABEL not in view.selector:
                self.spanned = True
            if view.ready == ():
                self.no_ready_pods += 1
                self.without_ready_pods.append(describe(current))
        return current


def _append_changed(seen: list[str], value: object) -> None:
    if value and (not seen or seen[-1] != value):
        seen.append(str(value))


def watch_until(
    kube: Kube,
    done: Done,
    timeout: float,
    what: str,
    watch: Watch | None = None,
    *,
    on_poll: Callable[[], None] | None = None,
    name: str = "wine",
) -> Watch:
    """Look (``Watch.see``) every half second until ``done(status)``; the watch."""
    watch = watch or Watch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if on_poll is not None:
            on_poll()
        current = watch.see(kube, name)
        if current and done(current):
            return watch
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last:\n{describe(watch.last)}")


def wait_deployments(kube: Kube, expected: list[str], timeout: float = 30, why: str = "") -> None:
    """Wait until the namespace's Deployments are exactly ``expected`` (sorted names): the
    old revisions' are deleted."""
    wait_for(
        lambda: kube.deployments() == sorted(expected),
        timeout=timeout,
        what=lambda: f"only Deployments {expected}{why} (there: {kube.deployments()})",
    )
