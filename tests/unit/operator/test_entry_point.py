"""`vigil-operator` options, kopf settings, and the operator's own metrics."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from typing import Any

import kopf
import pytest

from vigil.core import naming
from vigil.operator import handlers
from vigil.operator.main import check_kopf_version, liveness_endpoint, parse_options
from vigil.operator.metrics import OperatorMetrics
from vigil.operator.runtime import (
    DEFAULT_SIDECAR_IMAGE,
    OperatorOptions,
    build_runtime,
    configure_kopf,
)


class TestOptions:
    def test_one_namespace_standalone(self) -> None:
        options = parse_options(["-n", "ml", "--standalone"])
        assert options.namespaces == ("ml",)
        assert not options.all_namespaces
        assert options.standalone and options.peering_name is None
        assert options.sidecar_image == DEFAULT_SIDECAR_IMAGE
        assert options.log_format == "plain"

    def test_several_namespaces_with_peering(self) -> None:
        options = parse_options(["-n", "a", "--namespace", "b", "--peering", "vigil"])
        assert options.namespaces == ("a", "b")
        assert not options.standalone
        assert options.peering_name == "vigil"

    def test_all_namespaces_and_every_knob(self) -> None:
        options = parse_options(
            [
                "--all-namespaces",
                "--standalone",
                "--sidecar-image",
                "registry.local/vigil:dev",
                "--metrics-port",
                "0",
                "--health-port",
                "9999",
                "--log-format",
                "json",
            ]
        )
        assert options.all_namespaces and options.namespaces == ()
        assert options.sidecar_image == "registry.local/vigil:dev"
        assert options.metrics_port == 0
        assert options.health_port == 9999
        assert options.log_format == "json"

    @pytest.mark.parametrize(
        ("pod_ip", "metrics", "liveness"),
        [
            ("", "0.0.0.0", "http://0.0.0.0:8080/healthz"),
            ("10.90.0.7", "0.0.0.0", "http://0.0.0.0:8080/healthz"),
            ("fd00:10:90::7", "::", "http://[::]:8080/healthz"),
        ],
    )
    def test_metrics_and_liveness_listen_on_the_pod_ips_family(
        self, monkeypatch: pytest.MonkeyPatch, pod_ip: str, metrics: str, liveness: str
    ) -> None:
        # Bound to 0.0.0.0 on an IPv6-only cluster, the kubelet's liveness probe of the pod
        # IP was refused: the operator restarted every 70 s.
        monkeypatch.setenv("VIGIL_POD_IP", pod_ip)
        options = parse_options(["-n", "ml", "--standalone"])
        assert (options.metrics_address, liveness_endpoint(options)) == (metrics, liveness)
        assert (
            liveness_endpoint(parse_options(["-A", "--standalone", "--health-port", "0"])) is None
        )

    def test_an_ipv6_metrics_address_serves_ipv4_and_ipv6_clients(self) -> None:
        # prometheus_client's server on :: takes IPv4 clients too (as mapped addresses).
        metrics = OperatorMetrics()
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::", 0))
            port = probe.getsockname()[1]
        metrics.serve(port, "::")
        for host in ("127.0.0.1", "[::1]"):
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
                assert answer.status == 200 and b"vigil_operator" in answer.read()

    def test_health_interval_defaults_to_30_seconds(self) -> None:
        assert parse_options(["-A", "--standalone"]).health_interval == 30
        options = parse_options(["-A", "--standalone", "--health-interval", "2.5"])
        assert options.health_interval == 2.5

    def test_health_interval_from_the_environment_and_a_bad_one_is_a_usage_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("VIGIL_HEALTH_INTERVAL", "12")
        assert parse_options(["-A", "--standalone"]).health_interval == 12
        monkeypatch.setenv("VIGIL_HEALTH_INTERVAL", "30s")  # a traceback at startup
        with pytest.raises(SystemExit) as exited:
            parse_options(["-A", "--standalone"])
        assert exited.value.code == 2
        assert "--health-interval: invalid float value: '30s'" in capsys.readouterr().err

    def test_sidecar_image_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VIGIL_SIDECAR_IMAGE", "from-env:1")
        assert parse_options(["-A", "--standalone"]).sidecar_image == "from-env:1"

    def test_sidecar_image_pull_policy_from_flag_or_environment_reaches_the_reconciler(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert parse_options(["-A", "--standalone"]).sidecar_pull_policy == "IfNotPresent"
        flag = ["-A", "--standalone", "--sidecar-image-pull-policy", "Always"]
        assert parse_options(flag).sidecar_pull_policy == "Always"
        monkeypatch.setenv("VIGIL_SIDECAR_IMAGE_PULL_POLICY", "Never")
        options = parse_options(["-A", "--standalone"])
        assert options.sidecar_pull_policy == "Never"
        assert build_runtime(options).reconciler.config.sidecar_pull_policy == "Never"

    def test_a_bad_pull_policy_from_the_environment_is_a_usage_error_naming_the_flag(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Kubernetes' spelling only: the API server would refuse every model pod.
        monkeypatch.setenv("VIGIL_SIDECAR_IMAGE_PULL_POLICY", "never")
        with pytest.raises(SystemExit) as exited:
            parse_options(["-A", "--standalone"])
        assert exited.value.code == 2
        assert "--sidecar-image-pull-policy: 'never' is not one of" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "argv",
        [
            ["--standalone"],  # no namespace choice
            ["-n", "ml"],  # no peering choice
            ["-n", "ml", "-A", "--standalone"],  # both scopes
            ["-n", "ml", "--standalone", "--peering", "x"],  # both peering modes
            ["-n", "ml", "--standalone", "--log-format", "xml"],
            ["-n", "ml", "--standalone", "--health-interval", "0"],
        ],
    )
    def test_ambiguous_or_missing_choices_are_refused(self, argv: list[str]) -> None:
        with pytest.raises(SystemExit):
            parse_options(argv)


class TestKopfSettings:
    def test_no_bookkeeping_on_objects_and_server_side_child_filters(self) -> None:
        settings = kopf.OperatorSettings()
        configure_kopf(settings, build_runtime(OperatorOptions()))
        assert isinstance(settings.persistence.progress_storage, kopf.StatusProgressStorage)
        diffbase = settings.persistence.diffbase_storage
        assert diffbase.build(body=kopf.Body({"spec": {"a": 1}}), extra_fields=[]) is None
        assert diffbase.fetch(body=kopf.Body({"status": {"kopf": {"x": 1}}})) is None
        assert settings.scanning.disabled
        assert not settings.posting.loggers
        selectors = dict(settings.watching.label_selectors.items())
        assert set(selectors.values()) == {"vigil.dev/model-deployment"}
        assert len(selectors) == 4  # deployments, services, configmaps, pods

    def test_handlers_module_registers_without_side_effects(self) -> None:
        assert callable(handlers.model_deployment_seen)
        assert callable(handlers.child_changed)

    def test_no_changing_handlers_so_kopf_keeps_no_state_on_objects(self) -> None:
        registry = kopf.get_default_registry()
        assert not registry._changing.get_all_handlers()
        assert not registry._spawning.get_all_handlers()


class TestMetrics:
    def test_reconciles_are_exported_from_zero(self) -> None:
        metrics = OperatorMetrics()
        for outcome in ("changed", "unchanged", "error"):
            assert (
                metrics.registry.get_sample_value(
                    "vigil_operator_reconciles_total", {"outcome": outcome}
                )
                == 0
            )

    def test_model_deployments_by_phase(self) -> None:
        metrics = OperatorMetrics()
        metrics.set_phase("a", "x", "Healthy")
        metrics.set_phase("a", "y", "Healthy")
        metrics.set_phase("b", "x", "Failed")
        metrics.set_phase("a", "y", None)

        def value(phase: str) -> float | None:
            return metrics.registry.get_sample_value(
                "vigil_operator_model_deployments", {"phase": phase}
            )

        assert value("Healthy") == 1
        assert value("Failed") == 1
        assert value("Progressing") == 0

    def test_separate_registries_do_not_collide(self) -> None:
        OperatorMetrics()
        OperatorMetrics()


def test_info_metric_names_the_sidecar_image() -> None:
    runtime = build_runtime(OperatorOptions(sidecar_image="s:1"))
    sample = runtime.metrics.registry.get_sample_value(
        "vigil_operator_info", {"version": "0.1.0", "sidecar_image": "s:1"}
    )
    assert sample == 1
    logging.getLogger(__name__).debug("ok")


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("1.45.2", True),
        ("1.46.0", True),
        ("2.0", True),
        ("1.44.9", False),
        ("1.37.0", False),
        ("main", True),
    ],
)
def test_kopf_version_guard(version: str, ok: bool) -> None:
    assert (check_kopf_version(version) is None) is ok


def test_installed_kopf_is_supported() -> None:
    assert check_kopf_version() is None


def test_kopf_decodes_watch_events_with_orjson() -> None:
    import inspect
    import json

    import orjson
    from kopf._cogs.clients import api as kopf_api

    from vigil.operator.runtime import decode_watch_streams_with_orjson

    decode_watch_streams_with_orjson()
    decode_watch_streams_with_orjson()  # twice is harmless
    assert kopf_api.json.loads is orjson.loads
    assert kopf_api.json.dumps is json.dumps  # the rest is the standard module
    # The patch point: kopf's watch stream decodes each line with its module's json.
    assert "json.loads(" in inspect.getsource(kopf_api.stream), (
        "kopf no longer decodes watch lines with kopf._cogs.clients.api's json.loads: "
        "vigil.operator.runtime.decode_watch_streams_with_orjson now swaps nothing; "
        "find where this kopf release decodes them (docs/design/api-traffic.md)"
    )
    line = b'{"type":"MODIFIED","object":{"metadata":{"name":"caf\\u00e9"},"spec":{"n":1.5}}}'
    assert kopf_api.json.loads(line.decode("utf-8")) == json.loads(line)


async def test_kopf_announces_each_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    from kopf._cogs.clients import watching as kopf_watching
    from kopf._cogs.structs import references

    from vigil.operator.runtime import announce_listings

    assert "continuous_watch(" in inspect.getsource(kopf_watching.infinite_watch), (
        "kopf's watch no longer (re)starts through kopf._cogs.clients.watching."
        "continuous_watch: vigil.operator.runtime.announce_listings now announces nothing "
        "and the object cache keeps ghosts after an empty relisting"
    )
    calls: list[tuple[str, str | None, bool]] = []

    async def empty_listing(**_: Any) -> Any:
        # What kopf's watch yields for a namespace with nothing left in it.
        yield kopf_watching.Bookmark.LISTED

    monkeypatch.setattr(kopf_watching, "continuous_watch", empty_listing)
    announce_listings(lambda plural, namespace, done: calls.append(("first", namespace, done)))
    announce_listings(lambda *call: calls.append(call))  # replaces
    resource = references.Resource("apps", "v1", "deployments")
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0

    async def watch(namespace: str | None) -> list[Any]:
        stream = kopf_watching.infinite_watch(
            settings=settings, resource=resource, namespace=namespace, _iterations=2
        )
        return [event async for event in stream]

    assert await watch("ml") == [kopf_watching.Bookmark.LISTED] * 2
    assert calls == [("deployments", "ml", False), ("deployments", "ml", True)] * 2

    async def failed_listing(**_: Any) -> Any:
        # kopf gives up a listing the API server does not answer: no LISTED.
        return
        yield

    # kopf's pause waiter: a task done when it pauses the operator (peering), cancelled
    # when only the stream ends; a bare future for a stream it does not pause.
    active: list[bool] = []

    async def listed(**kwargs: Any) -> Any:
        yield kopf_watching.Bookmark.LISTED

    monkeypatch.setattr(kopf_watching, "continuous_watch", listed)
    announce_listings(lambda *call: None, active.append)

    async def stream(waiter: Any) -> None:
        watch = kopf_watching.continuous_watch(
            settings=settings, resource=resource, namespace="ml", operator_pause_waiter=waiter
        )
        assert [event async for event in watch] == [kopf_watching.Bookmark.LISTED]

    pause = asyncio.Event()
    paused = asyncio.create_task(pause.wait())
    await stream(paused)
    pause.set()
    await paused
    ended = asyncio.create_task(asyncio.Event().wait())
    await stream(ended)
    ended.cancel()
    await stream(asyncio.get_running_loop().create_future())  # peering's own stream
    await asyncio.sleep(0)
    assert active == [True, False, True]
    assert build_runtime(OperatorOptions(peering_name="vigil")).reconciler.active is False

    monkeypatch.setattr(kopf_watching, "continuous_watch", failed_listing)
    announce_listings(lambda *call: calls.append(call))
    calls.clear()
    assert await watch("ml") == []
    assert calls == [("deployments", "ml", False)] * 2
    monkeypatch.setattr(kopf_watching, "continuous_watch", empty_listing)
    # The operator's settings point the announcements at its cache.
    runtime = build_runtime(OperatorOptions())
    configure_kopf(settings, runtime)
    await watch(None)
    assert not runtime.cache.serves_list("Deployment", "ml", f"{naming.LABEL_MODEL_DEPLOYMENT}=m")
    assert runtime.cache.serves_list("Service", "ml", f"{naming.LABEL_MODEL_DEPLOYMENT}=m")


async def test_a_namespace_the_operator_may_not_watch_stops_no_other(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its RoleBinding deleted with it: kopf let the 403 end the operator (crash-looping on
    restart), and every other namespace went unreconciled. Said, and tried again."""
    from kopf._cogs.clients import errors as kopf_errors
    from kopf._cogs.clients import watching as kopf_watching
    from kopf._cogs.structs import references

    from vigil.operator import runtime as runtime_module

    async def refused(**_: Any) -> Any:
        raise kopf_errors.APIForbiddenError(
            {"message": 'configmaps is forbidden: User "vigil" cannot list resource'},
            status=403,
            headers={},
        )
        yield

    calls: list[tuple[str, str | None, bool]] = []
    monkeypatch.setattr(kopf_watching, "continuous_watch", refused)
    monkeypatch.setattr(runtime_module, "FORBIDDEN_RETRY_SECONDS", 0.0)
    runtime_module.announce_listings(lambda *call: calls.append(call))
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0
    stream = kopf_watching.infinite_watch(
        settings=settings,
        resource=references.Resource("", "v1", "configmaps"),
        namespace="gone",
        _iterations=2,
    )
    # Listed for kopf each time: its handlers wait for every listing before any runs. The
    # cache is told of a complete (empty) listing at the second 403 in a row only: one for
    # a few seconds (an API server restarting) read so made it drop every object there; one
    # that lasts (the namespace gone) would keep them for ever.
    assert [event async for event in stream] == [kopf_watching.Bookmark.LISTED] * 2
    started, done = ("configmaps", "gone", False), ("configmaps", "gone", True)
    assert calls == [started, started, done]
    assert "cannot watch configmaps in namespace gone" in caplog.text
    assert "leave the namespace out of --namespace" in caplog.text


def test_peers_get_distinct_priorities_unless_told() -> None:
    # kopf pauses every instance of equal priority: two replicas would both wait.
    args = ["--all-namespaces", "--peering", "vigil"]
    drawn = {parse_options(args).priority for _ in range(5)}
    assert len(drawn) > 1
    assert parse_options([*args, "--priority", "7"]).priority == 7


def test_the_health_loop_and_the_rollouts_read_the_sidecars_through_one_source() -> None:
    # A sidecar hands a peer what no read of its /metrics returned: two readers would
    # each miss what the other read (docs/design/ground-truth.md).
    runtime = build_runtime(OperatorOptions())
    rollouts = runtime.reconciler.rollouts
    assert rollouts is not None
    assert rollouts.sources is runtime.health.sources
    assert rollouts.sources.get(("direct", "")) is runtime.health.sources.get(("direct", ""))
