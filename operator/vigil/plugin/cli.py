"""``vigil promote|abort|pause|resume|retry NAME`` (also ``kubectl vigil ...``).

Each command places a request annotation on the ModelDeployment with the
real ``kubectl`` (so the user's kubeconfig, context, credentials and
namespace defaults apply exactly as for any kubectl command) and, with
``--wait``, waits until the operator has answered it (cleared it), then
says whether it was taken or refused and why (``status.lastRequest``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from vigil.common.objects import body, section
from vigil.core.vocabulary import RequestVerb
from vigil.plugin.requests import (
    ANNOTATION_REQUEST,
    ANNOTATION_REQUEST_ID,
    REQUEST_ANNOTATIONS,
    VERBS,
    answer_to,
    new_request_id,
    request_annotations,
)
from vigil.plugin.terminal import escape_controls, escape_controls_in

RESOURCE = "modeldeployments.vigil.dev"
#: The field manager of the request annotations. Not "kubectl...": Flux's kustomize-controller
#: takes every kubectl* manager's fields over as edits to undo, so its next apply erased a
#: request the operator had not read yet (tests/e2e/gitops).
FIELD_MANAGER = "vigil-plugin"

HELP = {
    "promote": "promote the candidate now, skipping the remaining steps and gates",
    "abort": "roll the candidate back now; the stable keeps serving",
    "pause": "hold the rollout where it is (traffic and step)",
    "resume": "resume a paused rollout, or release a 'pause' step without duration",
    "retry": "roll out again a revision that was rolled back or failed",
}


#: ``--wait``'s exit when the operator answered a newer request before this one's answer was
#: read: it most likely answered this one too (a request is replaced only once answered),
#: but its answer is gone from ``status.lastRequest``.
EXIT_OUTCOME_UNKNOWN = 3

#: ``--wait``'s exit when no answer came in time: the request stays placed and the operator
#: may still take it, which a script must not read as a refusal (1).
EXIT_STILL_PENDING = 4


class PluginError(RuntimeError):
    """kubectl is missing or refused the request; the message is for the person."""


def kubectl_error(result: subprocess.CompletedProcess[str], failed: str) -> PluginError:
    """What kubectl said went wrong (``failed`` if nothing): it may quote the API server's
    words, which anyone able to write the object chooses; shown, never obeyed."""
    return PluginError(escape_controls(result.stderr.strip()) or failed)


def kubectl_command() -> str:
    """The kubectl to run: ``$VIGIL_KUBECTL``, else ``kubectl`` on PATH."""
    chosen = os.environ.get("VIGIL_KUBECTL") or shutil.which("kubectl")
    if not chosen:
        raise PluginError("kubectl not found: install it or set VIGIL_KUBECTL")
    return chosen


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The ModelDeployment and where kubectl finds it: every plugin command takes these, and
    :func:`_global_flags` hands them on to kubectl."""
    parser.add_argument("name", help="the ModelDeployment")
    parser.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: kubectl's)")


def seconds_at_least(minimum: float) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, ``minimum`` or more."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not minimum <= value < math.inf:  # NaN fails both
            raise argparse.ArgumentTypeError(f"at least {minimum:g} seconds, got {text}")
        return value

    return seconds


def _global_flags(args: argparse.Namespace) -> list[str]:
    flags: list[str] = []
    if args.kubeconfig:
        flags.append(f"--kubeconfig={args.kubeconfig}")
    if args.context:
        flags.append(f"--context={args.context}")
    if args.namespace:
        flags.append(f"--namespace={args.namespace}")
    return flags


def annotate_command(
    args: argparse.Namespace, annotations: dict[str, str], replacing: str = "", read: str = ""
) -> list[str]:
    """The kubectl invocation that places the request (and nothing else). kubectl refuses
    while another request is there, which would otherwise be dropped unread; ``replacing``
    (a resourceVersion) overwrites one the operator has answered, if the object is still
    as read. ``read`` (a resourceVersion): placed only if the object is still as read, since
    kubectl's check is its own read: two people at once both passed it, and the second
    patch overwrote the first request unanswered. A request key it does not set is removed
    (``KEY-``): a revision left by the request it replaces would otherwise name the rollout
    this one is for."""
    version = replacing or read
    return [
        kubectl_command(),
        *_global_flags(args),
        "annotate",
        RESOURCE,
        args.name,
        *(["--overwrite"] if replacing else []),
        *([f"--resource-version={version}"] if version else []),
        f"--field-manager={FIELD_MANAGER}",
        *(f"{key}={value}" for key, value in annotations.items()),
        *(f"{key}-" for key in REQUEST_ANNOTATIONS if key not in annotations),
    ]


def run_kubectl(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a kubectl command line; one that cannot run is a :class:`PluginError`."""
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PluginError(f"cannot run kubectl: {error}") from error


def kubectl_output(args: argparse.Namespace, *command: str) -> str:
    """What ``kubectl COMMAND`` printed, with the target's flags; its error as a PluginError."""
    result = run_kubectl([kubectl_command(), *_global_flags(args), *command])
    if result.returncode != 0:
        raise kubectl_error(result, f"kubectl {' '.join(command)} failed")
    return result.stdout


def _read(args: argparse.Namespace) -> dict[str, Any]:
    return dict(json.loads(kubectl_output(args, "get", RESOURCE, args.name, "-o", "json")))


def _last_request_id(found: dict[str, Any] | None) -> str:
    return str(section(found or {}, "status", "lastRequest").get("id") or "")


def _report(
    args: argparse.Namespace, verb: str, request_id: str, found: dict[str, Any], seen: set[str]
) -> int:
    """Say what the operator answered: 0 when it took the request, 1 when it refused it (or
    none was read), :data:`EXIT_OUTCOME_UNKNOWN` when a newer answer replaced this one's.
    ``seen``: the ``lastRequest`` ids read while this request waited (none newer)."""
    answer = answer_to(found.get("status"), request_id)
    where = f"modeldeployment/{args.name}"
    newer = _last_request_id(found)
    if answer is None and newer and newer not in seen:
        # The operator answered another request placed after ours, before this poll.
        print(
            f"{where}: the {verb} request was most likely answered, but its outcome is "
            f"unknown: the answer to a newer request (id {escape_controls(newer)}) replaced "
            f"it before it was read. A refusal leaves a Warning Event RequestRefused naming "
            f"the {verb} request (kubectl vigil status {args.name} lists the Events)",
            file=sys.stderr,
        )
        return EXIT_OUTCOME_UNKNOWN
    if answer is None:  # the operator answers before it clears: removed, or replaced
        print(
            f"{where}: no answer to the {verb} request (removed by a person, or replaced "
            "by a newer request before its answer was read)",
            file=sys.stderr,
        )
        return 1
    # Anyone able to write the status chooses its words: shown, never obeyed.
    why = escape_controls(answer.message)
    if answer.taken:
        print(f"{where}: the operator took the {verb} request: {why}")
        return 0
    print(f"{where}: the operator refused the {verb} request: {why}", file=sys.stderr)
    return 1


def _place(args: argparse.Namespace, annotations: dict[str, str], read: str) -> None:
    """Annotate the object as ``read`` (its resourceVersion); over an earlier request only
    once the operator has answered it (it then clears it a moment later, with a patch that
    leaves a newer request alone)."""
    replacing = ""
    for _ in range(5):  # the operator's status writes change the version too
        result = run_kubectl(annotate_command(args, annotations, replacing, read))
        if result.returncode == 0:
            return
        refused = ("already has a value", "the object has been modified")
        if not any(words in result.stderr for words in refused):
            raise kubectl_error(result, f"kubectl annotate failed ({result.returncode})")
        found = _read(args)
        placed = body(found).meta.annotations
        read = body(found).meta.resource_version
        if not any(key in placed for key in REQUEST_ANNOTATIONS):  # cleared, or none yet
            replacing = ""
            continue
        earlier = placed.get(ANNOTATION_REQUEST_ID, "")
        if ANNOTATION_REQUEST in placed and answer_to(found.get("status"), earlier) is None:
            raise PluginError(_pending(args, found))
        # Answered, or leftovers of a request (no verb): replaced if the object is as read.
        replacing = body(found).meta.resource_version
    raise PluginError(f"modeldeployment/{args.name} kept changing: try again")


def _pending(args: argparse.Namespace, found: dict[str, Any]) -> str:
    """Why a request cannot be placed: another one waits for the operator."""
    # Anyone able to annotate the object chooses these: shown, never obeyed.
    annotations = escape_controls_in(body(found).meta.annotations)
    placed = [key for key in REQUEST_ANNOTATIONS if key in annotations]
    return (
        f"modeldeployment/{args.name}: a request is still pending "
        f"({annotations.get(ANNOTATION_REQUEST, '?')}, "
        f"id {annotations.get(ANNOTATION_REQUEST_ID, '?')}): wait for the "
        "operator's answer (kubectl vigil status), or withdraw it with kubectl annotate "
        f"{' '.join(_global_flags(args))} {RESOURCE} {args.name} "
        f"{' '.join(f'{key}-' for key in placed)}"
    )


def request(args: argparse.Namespace) -> int:
    """Place the request; optionally wait until the operator has taken it."""
    verb = args.verb
    request_id = new_request_id()
    revision = read = ""
    seen: set[str] = set()
    if verb != RequestVerb.RETRY or args.wait > 0:
        found = _read(args)
        # The answer status holds before ours: one unseen while waiting is a newer request's.
        seen.add(_last_request_id(found))
        read = body(found).meta.resource_version
        if verb != RequestVerb.RETRY:
            # The candidate the person saw, ended or not, else the serving revision: the
            # request is refused in a rollout of another revision started before the operator
            # reads it (a spec edit, a sync), never applied to one nobody has looked at.
            status = section(found, "status")
            candidate, stable = section(status, "candidate"), section(status, "stable")
            revision = str(candidate.get("revision") or stable.get("revision") or "")
    _place(args, request_annotations(verb, request_id, revision), read)
    where = f" in namespace {args.namespace}" if args.namespace else ""
    target = f" for revision {revision}" if revision else ""
    print(f"modeldeployment/{args.name}{where}: {verb} requested{target} (id {request_id})")
    if args.wait <= 0:
        return 0
    return _wait(args, verb, request_id, seen)


def _wait(args: argparse.Namespace, verb: str, request_id: str, seen: set[str]) -> int:
    """Read until the request is answered or gone, or ``args.wait`` has passed. A failed
    read (the API server restarting, a network blip) is tried again: the request stays."""
    deadline = time.monotonic() + args.wait
    where = f"modeldeployment/{args.name}"
    failed = ""
    while True:
        try:
            found: dict[str, Any] | None = _read(args)
            failed = ""
        except (PluginError, ValueError) as error:
            found = None
            if not failed:  # said once; the request stays placed meanwhile
                print(f"{where}: cannot read it ({error}); trying again", file=sys.stderr)
            failed = str(error) or type(error).__name__
        if found is not None:
            # Answered (status first, the annotation cleared after), or gone without one.
            answered = answer_to(found.get("status"), request_id) is not None
            if answered or body(found).meta.annotations.get(ANNOTATION_REQUEST_ID) != request_id:
                return _report(args, verb, request_id, found, seen)
            seen.add(_last_request_id(found))
        left = deadline - time.monotonic()
        if left <= 0:
            break
        # The last sleep ends at the deadline, and the read after it is the last one: an
        # answer in the last second is not missed.
        time.sleep(min(1.0, left))
    why = f"the last read failed: {failed}" if failed else "is the operator running?"
    print(
        f"{where}: the {verb} request is still pending after {args.wait:g}s ({why}); it "
        "stays placed, and the operator acts on it when it reads it",
        file=sys.stderr,
    )
    return EXIT_STILL_PENDING


def _main(args: argparse.Namespace) -> int:
    try:
        return request(args)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def register(subparsers: Any) -> None:
    """Add one subcommand per verb (see :mod:`vigil.cli`)."""
    for verb in VERBS:
        parser = subparsers.add_parser(
            verb,
            help=HELP[verb],
            description=(
                f"{HELP[verb].capitalize()}. Sets the annotation vigil.dev/request={verb} on "
                "the ModelDeployment (never its spec); the operator acts and clears it."
            ),
        )
        add_target_arguments(parser)
        parser.add_argument(
            "--wait",
            type=seconds_at_least(0),
            default=0.0,
            metavar="SECONDS",
            help="wait up to this long for the operator's answer (exit 1 if refused or "
            f"removed unanswered, {EXIT_OUTCOME_UNKNOWN} if a newer request's answer replaced "
            f"it, {EXIT_STILL_PENDING} if none came in time: the request stays placed)",
        )
        parser.set_defaults(func=_main, verb=verb)
