"""``vigil status NAME`` / ``kubectl vigil status NAME [--watch]``.

Reads the ModelDeployment and its Events with the real kubectl (the user's
kubeconfig and context apply) and prints :func:`vigil.plugin.status.render`.
Colour is on for a terminal and off with ``--no-color``, ``NO_COLOR`` or a pipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from typing import Any

from vigil.common.objects import body
from vigil.plugin.cli import (
    PluginError,
    add_target_arguments,
    kubectl_output,
    seconds_at_least,
)
from vigil.plugin.status import WIDTH, render


def _kubectl_json(args: argparse.Namespace, *command: str) -> dict[str, Any]:
    return dict(json.loads(kubectl_output(args, *command, "-o", "json")))


def read_model_and_events(args: argparse.Namespace) -> tuple[dict[str, Any], list[Any], str]:
    """The ModelDeployment ``args.name``, the Events about it (status and report read both),
    and why those Events could not be read ("" when they were): a person allowed to read the
    object but not to list Events still gets the rest."""
    md = _kubectl_json(args, "get", "modeldeployments.vigil.dev", args.name)
    selector = _events_selector(args.name, body(md).meta.uid)
    try:
        found = _kubectl_json(args, "get", "events", f"--field-selector={selector}")
    except (PluginError, ValueError) as error:
        return md, [], str(error) or type(error).__name__
    return md, list(found.get("items") or []), ""


def _events_selector(name: str, uid: str) -> str:
    """The Events about this very object, by its uid too: Events outlive their object (an
    hour by default), and one created again under the name would list its predecessor's
    rollbacks as its own. By name alone for an object read without one (any served has one)."""
    selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={name}"
    return f"{selector},involvedObject.uid={uid}" if uid else selector


def snapshot(args: argparse.Namespace, colour: bool) -> str:
    md, events, unread = read_model_and_events(args)
    return render(md, events, colour=colour, events_unread=unread)


def status(args: argparse.Namespace) -> int:
    colour = not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    if args.watch:
        return watch(args, colour)
    try:
        print(snapshot(args, colour))
    except PluginError as error:
        print(f"vigil status: {error}", file=sys.stderr)
        return 1
    return 0


def watch(args: argparse.Namespace, colour: bool) -> int:
    """Refresh until Ctrl-C (vigil.cli returns 130). A kubectl error (the API server
    restarting, a network blip) is shown above the last screen read, and the next
    refresh tries again: a watch left open is not ended by one failed read."""
    screen, read_at = "", ""
    while True:
        try:
            screen, read_at = snapshot(args, colour), time.strftime("%H:%M:%S")
            shown = screen
        except PluginError as error:
            failed = f"vigil status: {error}; retrying every {args.interval:g}s"
            if screen:
                failed += f" (the screen below was read at {read_at})"
            shown = "\n".join(textwrap.wrap(failed, WIDTH)) + (f"\n\n{screen}" if screen else "")
        sys.stdout.write("\033[H\033[2J" + shown + "\n")
        sys.stdout.flush()
        time.sleep(args.interval)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="show a ModelDeployment: revisions, steps, traffic, health, events"
    )
    add_target_arguments(parser)
    parser.add_argument("-w", "--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument(
        "--interval",
        type=seconds_at_least(0.5),
        default=2.0,
        help="seconds between refreshes (>= 0.5)",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text")
    parser.set_defaults(func=status)
