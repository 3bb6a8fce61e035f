"""``vigil-sidecar``: start the proxy, the metrics port and the background tasks.

Shutdown on SIGTERM/SIGINT: readiness turns 503 at once, the proxy keeps
serving for ``shutdown.delaySeconds`` (endpoints take a moment to drop the
pod), then stops accepting and waits up to ``shutdown.drainTimeoutSeconds``
for in-flight requests and their answers to be sent before closing
connections and exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from vigil.profile import ReferenceProfile
from vigil.sidecar.config import ConfigError, Settings, SettingsWatcher, load_settings
from vigil.sidecar.feedback import FeedbackMetrics, FeedbackService
from vigil.sidecar.identity import IdMaker
from vigil.sidecar.listening import bound_port
from vigil.sidecar.metrics import OpsMetrics
from vigil.sidecar.monitor import Monitor, load_reference
from vigil.sidecar.proxy import Proxy
from vigil.sidecar.shadow import Shadow

__all__ = ["Sidecar", "build_arg_parser", "main"]

log = logging.getLogger("vigil.sidecar")
SIDECAR_VERSION = "0.1.0"


@dataclass
class Sidecar:
    """All parts of one running sidecar (tests start it in-process too)."""

    settings: Settings
    registry: CollectorRegistry
    ops: OpsMetrics
    monitor: Monitor
    shadow: Shadow
    proxy: Proxy
    watcher: SettingsWatcher
    feedback: FeedbackService | None = None
    metrics_runner: web.AppRunner | None = None
    _tasks: tuple[asyncio.Task[Any], ...] = ()

    @classmethod
    def create(cls, settings: Settings) -> Sidecar:
        registry = CollectorRegistry(auto_describe=False)
        base = {
            "model": settings.model_name,
            "version": settings.model_version,
            "revision": settings.revision,
            "role": settings.role,
        }
        ops = OpsMetrics(registry, base)
        reference = load_reference(settings.reference_profile)
        profile = reference.profile
        if profile is not None and settings.protocol == "raw":
            log.info("protocol raw: the reference profile is loaded but inputs are not parsed")
        monitor = Monitor(settings, base=base, registry=registry, reference=reference)
        shadow = Shadow(
            protocol=settings.protocol,
            base=base,
            registry=registry,
            classification=(profile.task == "classification") if profile else None,
            settings=settings.shadow,
            prediction_std=_prediction_std(profile),
        )
        ops.set_info(settings.protocol, profile.fingerprint if profile else "", SIDECAR_VERSION)
        feedback = _feedback_service(settings, base, registry, monitor, profile)
        ids = IdMaker(settings.revision, feedback.address if feedback is not None else "")
        proxy = Proxy(settings, ops, monitor, shadow, ids=ids)

        def apply(new: Settings) -> None:
            shadow.configure(new.shadow)
            monitor.sample_percent = new.sample_percent
            logging.getLogger("vigil").setLevel(new.log_level.upper())
            ops.settings_reload("applied")
            log.info("run-time settings applied from %s", new.config_path)

        def on_error(message: str) -> None:
            ops.settings_reload("error")
            log.error("settings file rejected, keeping the previous settings: %s", message)

        watcher = SettingsWatcher(settings, apply, on_error)
        return cls(settings, registry, ops, monitor, shadow, proxy, watcher, feedback)

    async def start(self) -> None:
        """Start the background tasks and bind both ports, the serving port last.

        A probe that sees the serving port answer may scrape the metrics port and
        send requests at once: the monitor, the ids and the metrics must be up.
        """
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        for path in ("/healthz", "/healthz/live"):
            app.router.add_get(path, self._healthz)
        for path in ("/readyz", "/healthz/ready"):
            app.router.add_get(path, self._readyz)
        self.metrics_runner = web.AppRunner(app, access_log=None)
        await self.metrics_runner.setup()
        site = web.TCPSite(
            self.metrics_runner, self.settings.metrics_host, self.settings.metrics_port
        )
        await site.start()
        if self.feedback is not None:
            await self.feedback.start()
            # A free port (tests) is only known now: the ids name it.
            self.proxy.ids = IdMaker(self.settings.revision, self.feedback.address)
        self.monitor.start()
        self.shadow.start()
        await self.proxy.start()
        loop = asyncio.get_running_loop()
        self._tasks = (
            loop.create_task(self.watcher.run(), name="vigil-settings"),
            loop.create_task(self.proxy.reap_idle(), name="vigil-idle-reaper"),
        )
        log.info(
            "vigil-sidecar listening on %s:%d -> %s (protocol %s), metrics on %s:%d",
            self.settings.listen_host or "*",
            self.proxy.port,
            self.settings.upstream,
            self.settings.protocol,
            self.settings.metrics_host or "*",
            self.metrics_port,
        )

    @property
    def metrics_port(self) -> int:
        return bound_port(self.metrics_runner, self.settings.metrics_port)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        status, body = await self.proxy.readiness()
        return web.Response(status=status, body=body, content_type="application/json")

    async def stop(self, delay: float = 0.0) -> None:
        """Graceful shutdown: not ready, delay, drain, stop the background tasks."""
        self.proxy.draining = True
        if delay > 0:
            await asyncio.sleep(delay)
        await self.proxy.drain(self.settings.drain_timeout_seconds)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.monitor.stop()
        await self.shadow.stop()
        if self.feedback is not None:
            # Labels for this pod's predictions still find them at a peer.
            try:
                await self.feedback.handoff()
            except Exception:  # never block the exit
                log.exception("feedback handoff failed")
            await self.feedback.stop()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()


def _feedback_service(
    settings: Settings,
    base: dict[str, str],
    registry: CollectorRegistry,
    monitor: Monitor,
    profile: ReferenceProfile | None,
) -> FeedbackService | None:
    """The feedback port and join store, unless ``feedback.enabled`` is false."""
    if not settings.feedback.enabled:
        return None
    task = settings.feedback.task or (profile.task if profile is not None else "")
    classes: tuple[str, ...] = ()
    if profile is not None and profile.prediction is not None:
        classes = tuple(profile.prediction.categories or ())
    metrics = FeedbackMetrics(base, registry, classes)
    return FeedbackService(
        settings.feedback,
        revision=settings.revision,
        task=task,
        monitor=monitor,
        metrics=metrics,
        listen_host=settings.listen_host,
    )


def _prediction_std(profile: ReferenceProfile | None) -> float | None:
    """A regression reference's prediction standard deviation (the shadow tolerance's scale)."""
    if profile is None or profile.task != "regression" or profile.prediction is None:
        return None
    summary = profile.prediction.summary
    return summary.std if summary is not None else None


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections on the hot path.

    Every proxied request allocates a few hundred short-lived objects, so
    with CPython's default threshold (700) a young-generation collection runs
    every other request. Startup objects (NumPy, the profile, the registry)
    are frozen out of the collector's view, and collections run less often;
    reference counting still frees almost everything at once. Under uvloop a
    proxied request, a scrape or a readiness check creates no reference
    cycles and leaves nothing behind (tests/unit/sidecar/test_sidecar_gc.py);
    cyclic garbage from elsewhere waits for at most 20 000 net allocations.
    """
    if os.environ.get("VIGIL_SIDECAR_GC", "tuned") == "default":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil-sidecar",
        description="Monitoring reverse proxy in front of a model server (see docs/sidecar.md).",
    )
    parser.add_argument("--config", help="settings file, JSON or YAML (env VIGIL_SIDECAR_CONFIG)")
    parser.add_argument("--listen-host", dest="listen_host")
    parser.add_argument("--listen-port", dest="listen_port", type=int)
    parser.add_argument("--metrics-host", dest="metrics_host")
    parser.add_argument("--metrics-port", dest="metrics_port", type=int)
    parser.add_argument("--upstream", help="model server base URL, http://127.0.0.1:8080")
    parser.add_argument("--protocol", choices=("v2", "v1", "raw"))
    parser.add_argument("--model-name", dest="model_name")
    parser.add_argument("--model-version", dest="model_version")
    parser.add_argument("--revision")
    parser.add_argument("--role", choices=("stable", "candidate"))
    parser.add_argument("--reference-profile", dest="reference_profile")
    parser.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    parser.add_argument("--max-features", dest="max_features", type=int)
    parser.add_argument("--log-level", dest="log_level")
    parser.add_argument("--event-loop", dest="event_loop", choices=("auto", "uvloop", "asyncio"))
    return parser


async def _run(settings: Settings) -> int:
    sidecar = Sidecar.create(settings)
    try:
        await sidecar.start()
    except OSError as exc:
        log.error("cannot bind: %s", exc)
        return 1
    _tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight requests")
    await sidecar.stop(settings.shutdown_delay_seconds)
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``vigil-sidecar``."""
    args = build_arg_parser().parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    try:
        settings = load_settings(args.config, cli)
    except ConfigError as exc:
        print(f"vigil-sidecar: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return _event_loop_runner(settings.event_loop)(_run(settings))
    except KeyboardInterrupt:  # pragma: no cover
        return 130


def _event_loop_runner(choice: str) -> Any:
    """``asyncio.run`` or ``uvloop.run``.

    uvloop (libuv) roughly halves the proxy's per-request CPU; ``auto`` uses
    it when installed and falls back to the standard loop otherwise.
    """
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit(
                    "vigil-sidecar: eventLoop uvloop requested but not installed"
                ) from None
        else:
            log.info("event loop: uvloop %s", uvloop.__version__)
            return uvloop.run
    return asyncio.run


if __name__ == "__main__":
    sys.exit(main())
