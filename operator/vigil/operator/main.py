"""`vigil-operator`: run the Vigil operator.

Choices that matter in production are explicit on purpose:
- which namespaces: `--namespace NS` (repeatable) or `--all-namespaces`;
- peering: `--standalone` (one replica, Deployment strategy Recreate: the
  recommended setup) or `--peering NAME` (kopf peering: needs kopf's peering
  CRDs; a stray operator then pauses instead of fighting). No default: a
  forgotten choice in kopf's default peering mode can freeze other operators.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import random
import sys
from collections.abc import Sequence

import kopf

from vigil import __version__
from vigil.core.desired import DEFAULT_PULL_POLICY, PULL_POLICIES
from vigil.operator import handlers  # registers the handlers with kopf
from vigil.operator.runtime import DEFAULT_SIDECAR_IMAGE, OperatorOptions, build_runtime

__all__ = ["build_parser", "check_kopf_version", "main", "parse_options"]
_ = handlers

# Behaviour is pinned to kopf 1.45: server-side label selectors for the child
# watches (settings.watching.label_selectors) and logins with kubernetes>=36.
MINIMUM_KOPF = (1, 45)


def check_kopf_version(version: str | None = None) -> str | None:
    """Why the installed kopf cannot run this operator, or None when it can."""
    version = version or importlib.metadata.version("kopf")
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None  # a development build: let it try
    if (major, minor) < MINIMUM_KOPF:
        wanted = ".".join(str(part) for part in MINIMUM_KOPF)
        return f"vigil-operator needs kopf >= {wanted}, found {version}"
    return None


def pull_policy(value: str) -> str:
    """An imagePullPolicy, checked here: the API server would refuse every model pod."""
    if value not in PULL_POLICIES:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(PULL_POLICIES)}")
    return value


def wildcard(pod_ip: str) -> str:
    """Every address of the pod IP's family: the kubelet probes, and Prometheus scrapes, the
    pod's IP, which may be IPv6 (0.0.0.0 is IPv4 only)."""
    return "::" if ":" in pod_ip else "0.0.0.0"


def liveness_endpoint(options: OperatorOptions) -> str | None:
    """kopf's /healthz URL (None: off), on the address family of /metrics."""
    if not options.health_port:
        return None
    host = wildcard(options.metrics_address)
    return f"http://{f'[{host}]' if ':' in host else host}:{options.health_port}/healthz"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil-operator",
        description="Run the Vigil operator: ModelDeployments, their sidecars and rollouts.",
    )
    parser.add_argument("--version", action="version", version=f"vigil-operator {__version__}")
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeat for several)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group(required=True)
    peering.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: this must be the only operator instance (1 replica, Recreate)",
    )
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="kopf peering object NAME: instances coordinate, only one acts at a time",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="with --peering: the instance of highest priority acts, the others wait "
        "(default: random; instances of equal priority would all wait)",
    )
    parser.add_argument(
        "--sidecar-image",
        default=os.environ.get("VIGIL_SIDECAR_IMAGE", DEFAULT_SIDECAR_IMAGE),
        help="image of the monitoring sidecar injected into model pods "
        "(default: $VIGIL_SIDECAR_IMAGE or %(default)s)",
    )
    parser.add_argument(
        "--sidecar-image-pull-policy",
        # A string default goes through `type` too: a bad $VIGIL_SIDECAR_IMAGE_PULL_POLICY
        # is a usage error naming the flag, not a model pod the API server refuses.
        type=pull_policy,
        default=os.environ.get("VIGIL_SIDECAR_IMAGE_PULL_POLICY", DEFAULT_PULL_POLICY),
        metavar="|".join(PULL_POLICIES),
        help="imagePullPolicy of the containers running the sidecar image in model pods "
        "(the sidecar, vigil-fetch; default: $VIGIL_SIDECAR_IMAGE_PULL_POLICY or %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="port of the operator's Prometheus /metrics (0 disables; default %(default)s)",
    )
    parser.add_argument(
        "--metrics-address",
        default=None,
        help="address /metrics listens on (default: every address of the pod IP's family, "
        "from $VIGIL_POD_IP: :: for IPv6, else 0.0.0.0)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=8080,
        help="port of the liveness endpoint /healthz (0 disables; default %(default)s)",
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        # A string: argparse converts it as it converts the flag, and a bad value is a
        # usage error naming the flag (float() here raised a traceback at startup).
        default=os.environ.get("VIGIL_HEALTH_INTERVAL", "30"),
        metavar="SECONDS",
        help="seconds between two health cycles over every ModelDeployment "
        "(default: $VIGIL_HEALTH_INTERVAL or %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("plain", "json"),
        default="plain",
        help="log lines as text or as JSON objects (default %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> OperatorOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.health_interval > 0:
        parser.error("--health-interval must be more than 0 seconds")
    return OperatorOptions(
        namespaces=tuple(args.namespaces or ()),
        all_namespaces=bool(args.all_namespaces),
        sidecar_image=args.sidecar_image,
        sidecar_pull_policy=args.sidecar_image_pull_policy,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address or wildcard(os.environ.get("VIGIL_POD_IP", "")),
        health_port=args.health_port,
        log_format=args.log_format,
        standalone=bool(args.standalone),
        peering_name=args.peering,
        priority=args.priority if args.priority is not None else random.randint(1, 1 << 30),
        verbose=bool(args.verbose),
        health_interval=float(args.health_interval),
    )


async def run(options: OperatorOptions) -> None:
    runtime = build_runtime(options)
    runtime.metrics.serve(options.metrics_port, options.metrics_address)
    liveness = liveness_endpoint(options)
    await kopf.operator(
        clusterwide=options.all_namespaces,
        namespaces=options.namespaces,
        standalone=options.standalone,
        peering_name=options.peering_name,
        priority=options.priority,
        liveness_endpoint=liveness,
        memo=kopf.Memo(runtime=runtime),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    problem = check_kopf_version()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.FULL,
    )
    try:
        asyncio.run(run(options))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
