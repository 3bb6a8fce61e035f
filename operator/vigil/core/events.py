"""Kubernetes Events about a ModelDeployment, as plain manifests with names that repeat.

An Event announces something the operator did (live traffic switched, a
rollout rolled back) or saw (a health condition flipped). It is posted
*before* the status write that records the same step, so that a kill
between the two cannot lose it; the cycle that runs again after such a kill
recomputes the same Event, and its name, derived from the object's
resourceVersion and the Event's own words, makes the second post a
conflict (409) instead of a duplicate. The same words on a later version of
the object are a new occurrence and get a new name. An outcome (a rollback)
decided again after a kill has newer figures in its words, and the object
may have a newer version by then (the health loop writes status): it names
its occurrence (the outcome, the revision and the attempt's start) instead,
one name for that attempt's outcome whatever the version. An attempt's start
(RolloutStarted), said until status records it, is named by the revision and
the status it starts from, which the cycle decided again finds unchanged.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

from vigil.common.objects import body
from vigil.common.times import format_micro_time

#: The API server refuses longer messages (bytes); the middle of a long one goes.
MAX_MESSAGE_LENGTH = 1024
CUT_INFIX = " ... "
#: Event names are DNS subdomains (at most 253 characters): the owner's name, a dot, a digest.
MAX_NAME_PREFIX = 200


def shorten(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """The message within the API server's limit (in UTF-8 bytes), its start and end kept."""
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    keep = limit - len(CUT_INFIX)
    # A character cut in two at either edge is dropped whole.
    head = encoded[: keep - keep // 2].decode(errors="ignore")
    tail = encoded[len(encoded) - keep // 2 :].decode(errors="ignore")
    return head + CUT_INFIX + tail


def event_name(
    involved: Mapping[str, Any], event_type: str, reason: str, message: str, occurrence: str = ""
) -> str:
    """`<name>.<digest>`: the same for the same words on the same version of the object, or
    for the same ``occurrence`` (when given) on any version."""
    meta = body(involved).meta
    parts = (meta.uid, occurrence) if occurrence else (meta.uid, meta.resource_version, message)
    key = "\x00".join((*parts, event_type, reason))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{(meta.name or 'object')[:MAX_NAME_PREFIX]}.{digest}"


def event_manifest(
    involved: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool,
    now: datetime.datetime,
    component: str,
    occurrence: str = "",
) -> dict[str, Any]:
    """A core/v1 Event on `involved` (the object as read when the step was decided)."""
    metadata = involved.get("metadata") or {}
    event_type = "Warning" if warning else "Normal"
    message = shorten(message)
    stamp = format_micro_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(involved, event_type, reason, message, occurrence),
            "namespace": metadata.get("namespace"),
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message,
        "action": reason,
        "source": {"component": component},  # the "From" column of `kubectl describe`
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": stamp,
        "count": 1,
    }
