"""Hypothesis strategies for ModelDeployment specs: valid ones and near misses.

Why this shape: the interesting specs sit at the schema's edges (a port of 1 or
65535, a 10ms window, four steps of mixed kinds, 63-character names, free
Unicode in commands and values). ``valid_specs`` draws only values the schema
allows, from small sets around each bound plus free text where any text goes;
``near_misses`` take a valid spec and change one field to an edge value that may
or may not be allowed. ``specs`` mixes both, so that a good share is admitted and
a good share refused; whatever the API server admits must go through the
operator unharmed.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

DURATIONS = ["1s", "10ms", "5m", "1.5m", "1h30m", "90m", "8760h", "0.5s", "1h0m0s"]
NAMES = ["wine", "a", "Model_1.x", "m" * 63, "1", "A-b_c.d"]
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12
)


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers at both bounds, just inside them, and in between."""
    edges = [low, low + 1, (low + high) // 2, high - 1, high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _config_ref() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "configMapKeyRef": st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["wine-reference", "ref", "r.e-f", "a" * 253]),
                    "key": st.sampled_from(["profile.json", "p", "golden.json", "A_b-c.d"]),
                }
            )
        }
    )


def _tolerance() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "absolute": st.sampled_from([0, 0.5, 10]),
            "relative": st.sampled_from([0, 0.05, 1]),
        },
    )


def _step() -> st.SearchStrategy[dict[str, Any]]:
    duration = st.sampled_from(DURATIONS)
    canary = st.fixed_dictionaries({"weight": _ints(1, 99)}, optional={"duration": duration})
    shadow = st.fixed_dictionaries(
        {},
        optional={
            "percent": _ints(1, 100),
            "duration": duration,
            "minRequests": _ints(0, 500),
            "tolerance": _tolerance(),
        },
    )
    pause = st.fixed_dictionaries({}, optional={"duration": duration})
    validate = st.fixed_dictionaries(
        {"goldenSet": _config_ref()}, optional={"minAgreement": st.sampled_from([0, 0.5, 1])}
    )
    return st.one_of(
        st.builds(lambda b: {"canary": b}, canary),
        st.builds(lambda b: {"shadow": b}, shadow),
        st.builds(lambda b: {"pause": b}, pause),
        st.builds(lambda b: {"validate": b}, validate),
    )


def _rollout() -> st.SearchStrategy[dict[str, Any]]:
    steps = st.lists(_step(), min_size=0, max_size=5)
    return st.fixed_dictionaries(
        {},
        optional={
            "replacement": st.fixed_dictionaries({"steps": steps}),
            "tweak": st.fixed_dictionaries({"steps": steps}),
            "analysis": st.fixed_dictionaries(
                {},
                optional={
                    "interval": st.sampled_from(DURATIONS),
                    "minRequests": _ints(0, 10_000),
                    "failureLimit": _ints(1, 100),
                    "minAgreement": st.sampled_from([0, 0.5, 0.95, 1]),
                    "maxPredictionShift": st.sampled_from([0, 0.2, 5]),
                    "tolerance": _tolerance(),
                },
            ),
            "progressDeadline": st.sampled_from(DURATIONS),
            "trafficRouting": st.fixed_dictionaries(
                {"gatewayAPI": st.fixed_dictionaries({"httpRoute": st.sampled_from(["r", "r.x"])})}
            ),
        },
    )


def _monitoring() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "reference": _config_ref(),
            "window": st.sampled_from(DURATIONS),
            "slo": st.fixed_dictionaries(
                {},
                optional={
                    "maxErrorRate": st.sampled_from([0, 0.01, 1]),
                    "maxLatencyP95": st.sampled_from(DURATIONS),
                },
            ),
            "drift": st.fixed_dictionaries(
                {},
                optional={
                    "method": st.sampled_from(["psi", "jsd"]),
                    "warning": st.sampled_from([0, 0.05, 0.1]),
                    "threshold": st.sampled_from([0.2, 0.5, 100]),
                },
            ),
            "metrics": st.sampled_from(
                [
                    {},
                    {"source": "direct"},
                    {"source": "prometheus", "prometheusURL": "http://prom:9090"},
                    {"source": "prometheus", "prometheusURL": "https://p.example/x/"},
                ]
            ),
            "sidecar": st.fixed_dictionaries(
                {},
                optional={"maxBodyBytes": _ints(1024, 67108864), "featureCap": _ints(1, 1024)},
            ),
        },
    )


def _env() -> st.SearchStrategy[list[dict[str, Any]]]:
    entry = st.fixed_dictionaries(
        {"name": st.sampled_from(["A", "B_1", "MODEL_NAME", "x.y", "-a", "_"])},
        optional={
            "value": TEXT,
            "valueFrom": st.sampled_from(
                [
                    {"fieldRef": {"fieldPath": "metadata.name"}},
                    {"configMapKeyRef": {"name": "c", "key": "k"}},
                    {"resourceFieldRef": {"resource": "limits.cpu"}},
                ]
            ),
        },
    ).filter(lambda e: not ("value" in e and "valueFrom" in e))
    return st.lists(entry, max_size=3, unique_by=lambda e: e["name"])


def valid_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Specs built only from values the schema allows."""
    resources = st.fixed_dictionaries(
        {},
        optional={
            "requests": st.dictionaries(
                st.sampled_from(["cpu", "nvidia.com/gpu"]),
                st.sampled_from(["100m", "1", 2, "0", "1e3", "0.5"]),
                max_size=2,
            ),
            "limits": st.dictionaries(
                st.sampled_from(["memory", "ephemeral-storage", "hugepages-2Mi"]),
                st.sampled_from(["1Gi", "512Mi", "1.5Gi", 1024]),
                max_size=2,
            ),
        },
    )
    server = st.fixed_dictionaries(
        {"image": st.sampled_from(["seldonio/mlserver:1.7.1-sklearn", "img", "x" * 512])},
        optional={
            "port": st.sampled_from([1, 80, 8080, 8001, 9091, 65535]),
            "protocol": st.sampled_from(["v2", "v1", "raw"]),
            "readinessPath": st.sampled_from(["/", "/v2/health/ready", "/v1/models/m", "/%2e"]),
            "command": st.lists(TEXT, max_size=3),
            "args": st.lists(TEXT, max_size=3),
            "env": _env(),
            "resources": resources,
        },
    )
    version = st.sampled_from(["1", "v1.2", "2024-05-01", "9" * 63, "a_b.c-d"])
    model = st.one_of(
        st.fixed_dictionaries(
            {"version": version},
            optional={
                "name": st.sampled_from(NAMES),
                "uri": st.sampled_from(["s3://b/m", "file:///m", "pvc://v/p", "https://h/m?x=1"]),
            },
        ),
        # A model vigil-fetch downloads, with its fields (one near miss: a size of 0).
        st.fixed_dictionaries(
            {
                "version": version,
                "uri": st.sampled_from(["s3://models/wine/m.tar.gz", "https://h/m.zip"]),
            },
            optional={
                "sha256": st.just("ab" * 32),
                "path": st.sampled_from(["/mnt/models", "/m/"]),
                "storage": st.sampled_from([{}, {"caConfigMapRef": {"name": "c", "key": "k"}}]),
                "fetch": st.sampled_from([{}, {"sizeLimit": "1Gi"}, {"sizeLimit": 0}]),
            },
        ),
    )
    return st.fixed_dictionaries(
        {"model": model, "server": server},
        optional={
            "replicas": _ints(1, 1000),
            "config": st.dictionaries(
                st.sampled_from(["THREADS", "_A", "a" * 128, "MLSERVER_PARALLEL_WORKERS"]),
                TEXT,
                max_size=3,
            ),
            "monitoring": _monitoring(),
            "rollout": _rollout(),
            "paused": st.booleans(),
        },
    )


#: (path, value): one field changed to an edge value (some allowed, most not).
MUTATIONS: list[tuple[str, Any]] = [
    ("server.port", 0),
    ("server.port", 8000),
    ("server.port", 9090),
    ("server.port", 65536),
    ("server.protocol", "grpc"),
    ("server.readinessPath", "health"),
    ("server.image", "a b"),
    ("server.image", ""),
    ("model.version", ""),
    ("model.version", "v 1"),
    ("model.name", "m" * 64),
    ("model.name", "\u00e9t\u00e9"),
    ("model.uri", "models/wine"),
    ("replicas", 0),
    ("replicas", 1001),
    ("replicas", -1),
    ("config", {"bad key": "1"}),
    ("config", {"VIGIL_X": "1"}),
    ("config", {"STORAGE_URI": "x"}),
    ("monitoring.window", "0s"),
    ("monitoring.window", "8761h"),
    ("monitoring.window", "5 m"),
    ("monitoring.window", "9" * 30 + "h"),
    ("monitoring.slo.maxErrorRate", 1.5),
    ("monitoring.slo.maxLatencyP95", "0s"),
    ("monitoring.drift.method", "kl"),
    ("monitoring.drift.warning", 0.3),
    ("monitoring.drift.threshold", 0),
    ("monitoring.metrics", {"source": "prometheus"}),
    ("monitoring.metrics", {"source": "prometheus", "prometheusURL": "ftp://p"}),
    ("monitoring.sidecar.maxBodyBytes", 1023),
    ("monitoring.sidecar.featureCap", 0),
    ("monitoring.reference", {"configMapKeyRef": {"name": "Bad_Name", "key": "k"}}),
    ("rollout.analysis.interval", "0s"),
    ("rollout.analysis.failureLimit", 0),
    ("rollout.analysis.minAgreement", 1.5),
    ("rollout.analysis.tolerance", {"absolute": -1}),
    ("rollout.analysis.tolerance.relative", -0.01),
    ("rollout.replacement.steps", [{"shadow": {"tolerance": {"absolute": "1%"}}}]),
    ("rollout.progressDeadline", "0ms"),
    ("rollout.replacement.steps", [{}]),
    ("rollout.replacement.steps", [{"canary": {"weight": 20}, "pause": {}}]),
    ("rollout.replacement.steps", [{"canary": {"weight": 100}}]),
    ("rollout.replacement.steps", [{"canary": {"weight": 10, "duration": "0s"}}]),
    ("rollout.tweak.steps", [{"pause": {"duration": "0s"}}] * 16),
    ("rollout.tweak.steps", [{"shadow": {"percent": 1}}] * 17),
    ("rollout.trafficRouting.gatewayAPI.httpRoute", "Bad_Route"),
    ("server.env", [{"name": "A", "valueFrom": {}}]),
    ("server.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
    ("server.resources", {"requests": {"bad key": "1"}}),
    ("server.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
    ("server.resources", {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}),
    ("server.resources", {"limits": {"memory": "-1"}}),
    ("server.resources", {"requests": {"cpu": "0"}}),
    ("paused", "yes"),
]


def _apply(spec: dict[str, Any], mutation: tuple[str, Any]) -> dict[str, Any]:
    path, value = mutation
    out = copy.deepcopy(spec)
    target = out
    *parents, leaf = path.split(".")
    for key in parents:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[leaf] = copy.deepcopy(value)
    return out


def near_misses() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(_apply, valid_specs(), st.sampled_from(MUTATIONS))


def specs() -> st.SearchStrategy[dict[str, Any]]:
    """A ModelDeployment ``spec``: valid or one field off."""
    return st.one_of(valid_specs(), near_misses())
