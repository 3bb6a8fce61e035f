"""What ``kubectl vigil`` reads of a ModelDeployment, as the operator reads it.

- :func:`read_spec`: the spec's thresholds and rollout, leniently. A section an
  older schema let in and the operator cannot use keeps its defaults there and
  is reported (``problem``, vigil.core.spec) while the rollout waits for a fix;
  status and report show the same defaults and say so, never a traceback.
- :func:`in_order`: Events oldest first, by their most precise time.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.common.times import parse_time
from vigil.core.spec import (
    HealthPolicy,
    MonitoringSettings,
    RolloutSpec,
    monitoring_settings,
    rollout_or_defaults,
)

#: What a section the schema should have refused raises (vigil.core.spec.parse's _reported).
_UNREADABLE = (ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class SpecReading:
    """The spec's monitoring settings and rollout; defaults for a section that cannot be read."""

    settings: MonitoringSettings
    rollout: RolloutSpec
    #: One sentence per unreadable section ("spec.rollout cannot be read ('weight')").
    problems: tuple[str, ...] = ()

    @property
    def policy(self) -> HealthPolicy:
        return self.settings.policy


def read_spec(spec: Mapping[str, Any] | None) -> SpecReading:
    """``spec.monitoring`` and ``spec.rollout``, each read on its own as the operator does
    (vigil.core.spec.parse_spec): one that cannot be read does not hide the other."""
    spec = spec if isinstance(spec, Mapping) else {}
    rollout = rollout_or_defaults(spec)
    problems = [f"spec.rollout cannot be read ({rollout.problem})"] if rollout.problem else []
    try:
        settings = monitoring_settings(spec)
    except _UNREADABLE as error:
        policy = HealthPolicy(min_requests=rollout.analysis.min_requests)
        settings = MonitoringSettings(policy)
        problems.append(f"spec.monitoring cannot be read ({str(error) or type(error).__name__})")
    return SpecReading(settings, rollout, tuple(problems))


def event_time(event: Mapping[str, Any]) -> datetime.datetime | None:
    """When an Event happened: its ``eventTime`` (microseconds), else ``lastTimestamp`` or
    ``firstTimestamp`` (whole seconds: Events of one second would tie)."""
    for key in ("eventTime", "lastTimestamp", "firstTimestamp"):
        moment = parse_time(event.get(key))
        if moment is not None:
            return moment
    return None


_NO_TIME = datetime.datetime.min.replace(tzinfo=datetime.UTC)


def in_order(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Oldest first (the API server lists Events by name); those without a time first."""
    return sorted(events, key=lambda event: event_time(event) or _NO_TIME)
