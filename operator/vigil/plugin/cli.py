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
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from vigil.common.objects import body
from vigil.plugin.requests import (
    ANNOTATION_REQUEST_ID,
    VERBS,
    answer_to,
    new_request_id,
    request_annotations,
)

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


class PluginError(RuntimeError):
    """kubectl is missing or refused the request; the message is for the person."""


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


def _global_flags(args: argparse.Namespace) -> list[str]:
    flags: list[str] = []
    if args.kubeconfig:
        flags.append(f"--kubeconfig={args.kubeconfig}")
    if args.context:
        flags.append(f"--context={args.context}")
    if args.namespace:
        flags.append(f"--namespace={args.namespace}")
    return flags


def annotate_command(args: argparse.Namespace, annotations: dict[str, str]) -> list[str]:
    """The kubectl invocation that places the request (and nothing else)."""
    return [
        kubectl_command(),
        *_global_flags(args),
        "annotate",
        RESOURCE,
        args.name,
        "--overwrite",
        f"--field-manager={FIELD_MANAGER}",
        *(f"{key}={value}" for key, value in annotations.items()),
    ]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PluginError(f"cannot run kubectl: {error}") from error


def _read(args: argparse.Namespace) -> dict[str, Any]:
    result = _run(
        [kubectl_command(), *_global_flags(args), "get", RESOURCE, args.name, "-o", "json"]
    )
    if result.returncode != 0:
        raise PluginError(result.stderr.strip() or "kubectl get failed")
    return dict(json.loads(result.stdout))


def _report(args: argparse.Namespace, verb: str, request_id: str, found: dict[str, Any]) -> int:
    """Say what the operator answered: 0 when it took the request, 1 when it refused it."""
    answer = answer_to(found.get("status"), request_id)
    where = f"modeldeployment/{args.name}"
    if answer is None:  # cleared without an answer in status (an older operator, a person)
        print(f"{where}: the {verb} request was cleared")
        return 0
    if answer.taken:
        print(f"{where}: the operator took the {verb} request: {answer.message}")
        return 0
    print(f"{where}: the operator refused the {verb} request: {answer.message}", file=sys.stderr)
    return 1


def request(args: argparse.Namespace) -> int:
    """Place the request; optionally wait until the operator has taken it."""
    verb = args.verb
    request_id = new_request_id()
    result = _run(annotate_command(args, request_annotations(verb, request_id)))
    if result.returncode != 0:
        raise PluginError(result.stderr.strip() or f"kubectl annotate failed ({result.returncode})")
    where = f" in namespace {args.namespace}" if args.namespace else ""
    print(f"modeldeployment/{args.name}{where}: {verb} requested (id {request_id})")
    if args.wait <= 0:
        return 0
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        found = _read(args)
        if body(found).meta.annotations.get(ANNOTATION_REQUEST_ID) != request_id:
            return _report(args, verb, request_id, found)
        time.sleep(1.0)
    print(
        f"modeldeployment/{args.name}: the {verb} request is still pending after {args.wait:g}s "
        "(is the operator running?)",
        file=sys.stderr,
    )
    return 1


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
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait up to this long for the operator's answer (exit 1 if refused)",
        )
        parser.set_defaults(func=_main, verb=verb)
