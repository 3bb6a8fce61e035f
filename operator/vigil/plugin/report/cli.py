"""``vigil report NAME`` / ``kubectl vigil report NAME``: write the model's report.

Reads the ModelDeployment, its Events and its reference profile with the real
kubectl (the person's kubeconfig and rights), the measured figures from
Prometheus (``--prometheus URL``, else the spec's ``prometheusURL``) or from
the sidecars directly (``--direct``, or when no Prometheus is known), and
writes one HTML file (``--output``) and, with ``--json``, the same numbers.
Progress goes to stderr; the written path to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from vigil.common.objects import body, section
from vigil.common.readable import duration
from vigil.core.spec import SOURCE_PROMETHEUS, ConfigMapKeyRef, outline_spec, parse_duration
from vigil.plugin.cli import PluginError, add_target_arguments, kubectl_output
from vigil.plugin.reading import read_spec
from vigil.plugin.report.figures import Context, Measured, build
from vigil.plugin.report.page import render
from vigil.plugin.report.sources import choose_step, from_prometheus, from_scrapes
from vigil.plugin.status_cli import _kubectl_json, read_model_and_events
from vigil.plugin.terminal import escape_controls
from vigil.profile import ProfileError, ReferenceProfile, parse_profile

LABEL_MODEL_DEPLOYMENT = "vigil.dev/model-deployment"
LABEL_REVISION = "vigil.dev/revision"
SIDECAR_METRICS_PORT = 9090


def _progress(text: str) -> None:
    # Pod names, kubectl's and Prometheus' errors come from the cluster: shown, never obeyed.
    print(f"report: {escape_controls(text)}", file=sys.stderr, flush=True)


def _failed(why: object) -> int:
    """Exit 1 saying why: kubectl's and Prometheus' words are quoted, shown and never obeyed."""
    print(f"vigil report: {escape_controls(str(why))}", file=sys.stderr)
    return 1


def _json(args: argparse.Namespace, *command: str) -> dict[str, Any]:
    return _kubectl_json(args, *command)


def _profile(args: argparse.Namespace, ref: ConfigMapKeyRef) -> ReferenceProfile:
    """The reference profile, from ``data`` or ``binaryData`` as the operator reads it
    (vigil.operator.health); what is wrong with it as a ProfileError or PluginError."""
    text = body(_json(args, "get", "configmap", ref.name)).value(ref.key)
    if text is None:
        raise ProfileError(f"no key {ref.key}")
    return parse_profile(text)


def _context(args: argparse.Namespace) -> Context:
    _progress(f"reading modeldeployment/{args.name}")
    md, events, unread = read_model_and_events(args)
    notes = [f"Events not read: {unread}"] if unread else []
    profile = None
    view = body(md)
    ref = outline_spec(view.meta.name, view.spec).reference
    if ref is not None:
        try:
            profile = _profile(args, ref)
        except (PluginError, ProfileError) as error:
            notes.append(f"reference profile {ref.name}: {error}")
    else:
        notes.append("no reference profile (spec.monitoring.reference): no drift figures")
    return Context(md, events, profile, generated_at=time.time(), notes=tuple(notes))


def _prometheus_url(args: argparse.Namespace, md: dict[str, Any]) -> str | None:
    if args.direct:
        return None
    if args.prometheus:
        return str(args.prometheus)
    settings = read_spec(body(md).spec).settings
    if settings.source == SOURCE_PROMETHEUS and settings.prometheus_url:
        return settings.prometheus_url
    return None


def _direct(args: argparse.Namespace, context: Context) -> Measured:
    meta = body(context.model_deployment).meta
    pods = _json(args, "get", "pods", "-l", f"{LABEL_MODEL_DEPLOYMENT}={meta.name}").get(
        "items", []
    )
    scrapes: dict[str, list[tuple[str, str]]] = {}
    unread: list[str] = []
    for pod in pods:
        obj = body(pod)
        if section(pod, "status").get("phase") != "Running" or obj.meta.deleting:
            continue
        path = (
            f"/api/v1/namespaces/{obj.meta.namespace}/pods/"
            f"{obj.meta.name}:{SIDECAR_METRICS_PORT}/proxy/metrics"
        )
        try:
            text = kubectl_output(args, "get", "--raw", path)
        except PluginError as error:  # one pod (starting, stopping) need not sink the report
            _progress(f"direct: cannot read {obj.meta.name}: {error}")
            unread.append(f"{obj.meta.name}: {error}")
            continue
        scrapes.setdefault(obj.meta.labels.get(LABEL_REVISION, ""), []).append(
            (obj.meta.name, text)
        )
    if unread and not scrapes:
        raise PluginError(f"no sidecar could be read: {unread[0]}")
    measured = from_scrapes(scrapes, now=time.time(), progress=_progress)
    if not unread:
        return measured
    missing = f"pods not read (their figures are missing): {'; '.join(unread)}"
    return dataclasses.replace(measured, notes=(*measured.notes, missing))


def measure(args: argparse.Namespace, context: Context) -> Measured:
    md = context.model_deployment
    url = _prometheus_url(args, md)
    if url is None:
        _progress("no Prometheus given (--prometheus URL): reading the sidecars directly")
        return _direct(args, context)
    end = time.time()
    start = end - args.since
    step = args.step or choose_step(end - start)
    policy = read_spec(body(md).spec).policy
    window = max(args.window or policy.window_seconds, step)
    labels_window = max(args.window or policy.performance.window_seconds, step)
    _progress(
        f"prometheus {url}: {duration(end - start)} every {duration(step)}, "
        f"{duration(window)} windows ({duration(labels_window)} for labels)"
    )
    return asyncio.run(
        from_prometheus(
            url,
            body(md).meta.namespace,
            body(md).meta.name,
            start=start,
            end=end,
            step=step,
            window_seconds=window,
            labels_window_seconds=labels_window,
            progress=_progress,
        )
    )


def report(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        context = _context(args)
        measured = measure(args, context)
    except RuntimeError as error:  # PluginError, PrometheusError
        return _failed(error)
    numbers = build(context, measured)
    output = Path(args.output or f"{args.name}-report.html")
    try:
        output.write_text(render(numbers), encoding="utf-8")
        if args.json:
            Path(args.json).write_text(json.dumps(numbers, indent=1, allow_nan=False) + "\n")
    except OSError as error:
        return _failed(f"cannot write the report: {error}")
    size = output.stat().st_size
    _progress(f"wrote {output} ({size / 1024:.0f} KiB) in {time.monotonic() - started:.1f}s")
    print(output.resolve())
    return 0


def _duration(text: str) -> float:
    """A positive duration as the CRD writes them (``90s``, ``5m``, ``1h30m``), in seconds."""
    try:
        seconds = parse_duration(text, 0.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a number and a unit: ms, s, m or h, e.g. 1h30m)"
        ) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return seconds


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a ModelDeployment's report: one HTML page of charts (and --json numbers)",
        description=(
            "Features (reference vs live, drift over time, missing and out-of-range rates), "
            "predictions, operations, rollouts with their gates, ground truth: one "
            "self-contained HTML file."
        ),
    )
    add_target_arguments(parser)
    parser.add_argument(
        "--since",
        type=_duration,
        default="1h",
        help="how far back, e.g. 90m or 1h30m (units ms, s, m, h; default %(default)s)",
    )
    parser.add_argument("-o", "--output", help="the HTML file (default: NAME-report.html)")
    parser.add_argument("--json", metavar="FILE", help="also write the report's numbers as JSON")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus to query (default: the spec's prometheusURL with source prometheus)",
    )
    source.add_argument(
        "--direct",
        action="store_true",
        help="read the sidecars through the API server's pod proxy (no history)",
    )
    parser.add_argument(
        "--step", type=_duration, help="time between points (default: about 120 points)"
    )
    parser.add_argument(
        "--window",
        type=_duration,
        help="each point's window (default: spec.monitoring.window, and for labels "
        "spec.monitoring.performance.window, as the health loop reads them; at least the step)",
    )
    parser.set_defaults(func=report)
