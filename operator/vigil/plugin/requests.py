"""The manual-request annotation contract, as pure functions (operator and plugin share them).

A person's request is two annotations on the ModelDeployment, and a third
for a rollout's verbs (promote, abort, pause, resume)::

    vigil.dev/request: promote        # promote | abort | pause | resume | retry
    vigil.dev/request-id: 5f0c...     # a fresh UUID per request
    vigil.dev/request-revision: 9b1e4d0   # the candidate the person saw (optional)

The operator, on seeing them:

1. reads the verb with :func:`read_request` (unknown verbs read as ""),
2. acts on it (``promote``/``abort``/``pause``/``resume`` go to
   ``RolloutState.requested``; ``retry`` lets the reconciler start the
   rolled-back revision again) or refuses it, and writes the answer with
   the request's id in ``status.lastRequest`` (read by :func:`answer_to`),
3. clears the annotations with :func:`clear_request_patch`, a JSON patch
   that first *tests* the id, so a newer request that arrived meanwhile is
   never wiped (the patch then fails with 422 and the operator re-reads).

These annotations are the only metadata the operator ever writes on a
ModelDeployment.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vigil.core.candidate import Request
from vigil.core.vocabulary import Answer as AnswerWord
from vigil.core.vocabulary import RequestVerb

ANNOTATION_REQUEST = "vigil.dev/request"
ANNOTATION_REQUEST_ID = "vigil.dev/request-id"
ANNOTATION_REQUEST_REVISION = "vigil.dev/request-revision"
REQUEST_ANNOTATIONS = (ANNOTATION_REQUEST, ANNOTATION_REQUEST_ID, ANNOTATION_REQUEST_REVISION)
#: Plain strings: argparse lists its choices by their repr.
VERBS: tuple[str, ...] = tuple(verb.value for verb in RequestVerb)

RolloutRequest = Literal["promote", "abort", "pause", "resume", ""]


def _pointer(key: str) -> str:
    """The JSON pointer of an annotation (RFC 6901 escapes '~' and '/')."""
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


def parse_request(annotations: Mapping[str, str] | None) -> Request | None:
    """The request on the object, or None when there is none."""
    raw = (annotations or {}).get(ANNOTATION_REQUEST)
    if raw is None:
        return None
    request_id = str((annotations or {}).get(ANNOTATION_REQUEST_ID, ""))
    revision = (annotations or {}).get(ANNOTATION_REQUEST_REVISION)
    return Request(str(raw), request_id, None if revision is None else str(revision))


def read_request(annotations: Mapping[str, str] | None) -> str:
    """The requested verb (``promote``, ``abort``, ``pause``, ``resume``, ``retry``) or ""."""
    request = parse_request(annotations)
    return request.verb if request is not None and request.valid else ""


def rollout_request(annotations: Mapping[str, str] | None) -> RolloutRequest:
    """The verb as ``RolloutState.requested`` takes it ("" for retry or nothing)."""
    verb = read_request(annotations)
    if verb == "promote":
        return "promote"
    if verb == "abort":
        return "abort"
    if verb == "pause":
        return "pause"
    if verb == "resume":
        return "resume"
    return ""


def new_request_id() -> str:
    return str(uuid.uuid4())


def request_annotations(
    verb: str, request_id: str | None = None, revision: str = ""
) -> dict[str, str]:
    """The annotations the plugin sets for a request (``revision``: the candidate it is for)."""
    if verb not in VERBS:
        raise ValueError(f"unknown request {verb!r}: one of {', '.join(VERBS)}")
    placed = {ANNOTATION_REQUEST: verb, ANNOTATION_REQUEST_ID: request_id or new_request_id()}
    if revision:
        placed[ANNOTATION_REQUEST_REVISION] = revision
    return placed


def request_patch(verb: str, request_id: str | None = None, revision: str = "") -> dict[str, Any]:
    """A JSON merge patch that places a request (touches nothing else). Without a revision it
    removes one an earlier request left, which would name the rollout this one is for."""
    placed: dict[str, str | None] = {ANNOTATION_REQUEST_REVISION: None}
    placed.update(request_annotations(verb, request_id, revision))
    return {"metadata": {"annotations": placed}}


@dataclass(frozen=True)
class Answer:
    """The operator's answer to one request, from ``status.lastRequest``."""

    taken: bool
    message: str


def answer_to(status: Mapping[str, Any] | None, request_id: str) -> Answer | None:
    """The answer to the request with this id, or None (not answered, or another one's)."""
    last = (status or {}).get("lastRequest") or {}
    if not request_id or last.get("id") != request_id:
        return None
    return Answer(last.get("answer") == AnswerWord.TAKEN, str(last.get("message") or ""))


def clear_request_patch(request: Request) -> list[dict[str, Any]]:
    """The JSON patch (``application/json-patch+json``) that clears exactly this request.

    The ``test`` operation makes the API server refuse (422) if the id has
    changed since it was read, i.e. a person asked again meanwhile.
    """
    ops: list[dict[str, Any]] = []
    if request.request_id:
        ops.append(
            {"op": "test", "path": _pointer(ANNOTATION_REQUEST_ID), "value": request.request_id}
        )
        ops.append({"op": "remove", "path": _pointer(ANNOTATION_REQUEST_ID)})
    else:
        ops.append({"op": "test", "path": _pointer(ANNOTATION_REQUEST), "value": request.verb})
    ops.append({"op": "remove", "path": _pointer(ANNOTATION_REQUEST)})
    if request.revision is not None:
        ops.append({"op": "remove", "path": _pointer(ANNOTATION_REQUEST_REVISION)})
    return ops
