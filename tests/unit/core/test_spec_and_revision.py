"""Spec parsing with the CRD's defaults, revision hashing and change classification."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

import yaml_kit
from vigil.core import spec as spec_module
from vigil.core.revision import (
    canonical_hash,
    classify_change,
    compute_identity,
    compute_revision,
)
from vigil.core.spec import SpecError, default_readiness_path, parse_spec
from vigil.core.spec.rollout_parse import STEP_KINDS_PROBLEM
from vigil.core.vocabulary import ChangeKind as Change
from vigil.sidecar.metrics import LATENCY_BUCKETS

ROOT = Path(__file__).resolve().parents[3]
BASE: dict[str, Any] = {
    "model": {"name": "wine", "version": "1", "uri": "s3://m/wine/1"},
    "server": {"image": "seldonio/mlserver:1.7.1-sklearn"},
    "replicas": 2,
}
SIDECAR = "ghcr.io/vigil-dev/vigil:test"


def changed(path: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(BASE)
    target = result
    *parents, leaf = path.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value
    return result


def revision_of(raw: dict[str, Any], sidecar: str = SIDECAR) -> str:
    return compute_revision(parse_spec("wine", raw), sidecar)


class TestParsing:
    def test_defaults_match_the_crd(self) -> None:
        crd = yaml_kit.load((ROOT / "crds" / "modeldeployments.yaml").read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        props = schema["properties"]
        server = props["server"]["properties"]
        monitoring = props["monitoring"]["properties"]
        assert server["port"]["default"] == spec_module.DEFAULT_SERVER_PORT
        assert server["protocol"]["default"] == spec_module.DEFAULT_PROTOCOL
        assert props["replicas"]["default"] == spec_module.DEFAULT_REPLICAS
        assert monitoring["window"]["default"] == spec_module.DEFAULT_WINDOW
        sidecar = monitoring["sidecar"]["properties"]
        assert sidecar["maxBodyBytes"]["default"] == spec_module.DEFAULT_MAX_BODY_BYTES
        assert sidecar["featureCap"]["default"] == spec_module.DEFAULT_FEATURE_CAP
        drift = monitoring["drift"]["properties"]
        assert drift["method"]["default"] == spec_module.DEFAULT_DRIFT_METHOD
        assert "default" not in drift["warning"]  # the operator's depends on the threshold
        assert drift["threshold"]["default"] == spec_module.DEFAULT_DRIFT_THRESHOLD
        assert tuple(server["protocol"]["enum"]) == spec_module.PROTOCOLS

    @pytest.mark.parametrize(
        ("drift", "warning"),
        [({}, 0.1), ({"threshold": 0.5}, 0.1), ({"threshold": 0.1}, 0.05), ({"warning": 0.3}, 0.3)],
    )
    def test_a_drift_threshold_alone_gets_a_warning_below_it(self, drift, warning) -> None:
        # The CRD's rule warning < threshold would refuse a schema default of 0.1 beside a
        # threshold of 0.1, which the user never wrote: the operator defaults it instead.
        spec = {"model": {"version": "3"}, "server": {"image": "img"}}
        parsed = parse_spec("wine", {**spec, "monitoring": {"drift": drift}})
        assert parsed.monitoring.drift.warning == warning

    def test_the_crd_refuses_a_latency_slo_the_sidecar_cannot_measure(self) -> None:
        # A p95 beyond the sidecar's largest latency bucket reads as that bucket.
        crd = yaml_kit.load((ROOT / "crds" / "modeldeployments.yaml").read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        slo = schema["properties"]["monitoring"]["properties"]["slo"]["properties"]
        rules = [rule["rule"] for rule in slo["maxLatencyP95"]["x-kubernetes-validations"]]
        limit = spec_module.MAX_MEASURED_LATENCY_SECONDS
        assert f"duration(self) < duration('{limit:g}s')" in rules
        assert "duration(self) > duration('0s')" in rules  # 0s: every request too slow
        assert LATENCY_BUCKETS[-1] == limit

    @pytest.mark.parametrize("uri", ["HTTPS://u:p@host/wine.tar.gz", "S3://b/k", "Pvc://c/m"])
    def test_a_uri_scheme_vigil_places_written_in_capitals_is_refused_naming_it(
        self, uri: str
    ) -> None:
        # Neither fetched nor mounted, the URI (credentials too) went to the server as it was.
        spec = {"model": {"version": "3", "uri": uri}, "server": {"image": "img"}}
        with pytest.raises(SpecError, match=r"^spec\.model\.uri: write the scheme [a-z0-9]+:// in"):
            parse_spec("wine", spec)
        other = {**spec, "model": {"version": "3", "uri": "GS://b/k"}}  # the server's to load
        assert parse_spec("wine", other).model.uri == "GS://b/k"

    def test_a_step_holding_no_kind_says_how_a_pause_is_written(self) -> None:
        # `- pause:` is YAML's null, which the API server drops: the step is stored as {}.
        spec = {"model": {"version": "3"}, "server": {"image": "img"}}
        parsed = parse_spec("wine", {**spec, "rollout": {"tweak": {"steps": [{}]}}})
        problem = STEP_KINDS_PROBLEM
        assert parsed.rollout.problem == f"spec.rollout.tweak.steps[0]: {problem}"
        assert "`pause: {}`" in problem
        crd = yaml_kit.load((ROOT / "crds" / "modeldeployments.yaml").read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        step = schema["properties"]["rollout"]["properties"]["tweak"]["properties"]["steps"]
        assert [r["message"] for r in step["items"]["x-kubernetes-validations"]] == [problem]

    def test_a_latency_slo_stored_before_the_limit_still_reads(self) -> None:
        spec = {"model": {"version": "3"}, "server": {"image": "img"}}
        parsed = parse_spec("wine", {**spec, "monitoring": {"slo": {"maxLatencyP95": "30s"}}})
        assert not parsed.monitoring.problem and parsed.monitoring.slo.max_latency_p95 == 30

    def test_minimal_spec_gets_defaults(self) -> None:
        parsed = parse_spec("wine", {"model": {"version": "3"}, "server": {"image": "img"}})
        assert parsed.model.name == "wine"  # defaults to metadata.name
        assert parsed.model.uri is None
        assert parsed.server.port == 8080
        assert parsed.server.protocol == "v2"
        assert parsed.server.readiness_path == "/v2/health/ready"
        assert parsed.replicas == 1
        assert parsed.monitoring.reference is None
        assert parsed.monitoring.window == "5m"
        assert parsed.paused is False

    @pytest.mark.parametrize(
        ("protocol", "path"), [("v2", "/v2/health/ready"), ("v1", "/v1/models/m"), ("raw", "/")]
    )
    def test_readiness_path_follows_protocol(self, protocol: str, path: str) -> None:
        assert default_readiness_path(protocol, "m") == path
        parsed = parse_spec(
            "x",
            {
                "model": {"name": "m", "version": "1"},
                "server": {"image": "i", "protocol": protocol},
            },
        )
        assert parsed.server.readiness_path == path

    def test_explicit_values_win(self) -> None:
        parsed = parse_spec(
            "wine",
            {
                "model": {"name": "w", "version": "2", "uri": "s3://x"},
                "server": {
                    "image": "i",
                    "port": 9000,
                    "protocol": "v1",
                    "readinessPath": "/ok",
                    "command": ["serve"],
                    "args": ["--x"],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {"requests": {"cpu": "1"}},
                },
                "replicas": 3,
                "config": {"K": 5},
                "monitoring": {
                    "reference": {"configMapKeyRef": {"name": "ref", "key": "p.json"}},
                    "sidecar": {"maxBodyBytes": 2048, "featureCap": 7},
                    "drift": {"method": "jsd", "warning": 0.05, "threshold": 0.1},
                },
                "paused": True,
            },
        )
        assert parsed.model.name == "w"
        assert parsed.server.port == 9000
        assert parsed.server.readiness_path == "/ok"
        assert parsed.server.command == ("serve",)
        assert parsed.server.env[0]["name"] == "A"
        assert parsed.config == {"K": "5"}
        assert parsed.monitoring.reference is not None
        assert parsed.monitoring.reference.key == "p.json"
        assert parsed.monitoring.sidecar.feature_cap == 7
        assert parsed.monitoring.drift.method == "jsd"
        assert parsed.paused is True

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            ({"server": {"image": "i"}}, "spec.model.version is required"),
            ({"model": {"version": ""}, "server": {"image": "i"}}, "spec.model.version"),
            ({"model": {"version": "1"}}, "spec.server.image is required"),
            ({"model": {"version": "1"}, "server": {"image": "i", "protocol": "grpc"}}, "protocol"),
            ({"model": {"version": "1"}, "server": {"image": "i"}, "replicas": 0}, "replicas"),
            ({"model": "wine", "server": {"image": "i"}}, "spec.model must be an object"),
            (
                {
                    "model": {"version": "1"},
                    "server": {"image": "i"},
                    "monitoring": {"reference": {"configMapKeyRef": {"name": "r"}}},
                },
                "configMapKeyRef.key is required",
            ),
            (
                {"model": {"version": "1", "uri": "pvc://Models/wine"}, "server": {"image": "i"}},
                "spec.model.uri 'pvc://Models/wine': the claim must be",
            ),
            (
                {"model": {"version": "1", "uri": "pvc:///wine"}, "server": {"image": "i"}},
                "the claim must be",
            ),
            (
                {"model": {"version": "1", "uri": "pvc://m/a/../../x"}, "server": {"image": "i"}},
                "the path must stay inside the volume",
            ),
        ],
    )
    def test_what_the_pods_cannot_take_is_a_spec_error(self, raw: dict, message: str) -> None:
        with pytest.raises(SpecError, match=re.escape(message)):
            parse_spec("wine", raw)

    def test_none_spec_is_an_error_not_a_crash(self) -> None:
        with pytest.raises(SpecError):
            parse_spec("wine", None)

    @pytest.mark.parametrize(
        ("uri", "claim", "path"),
        [
            ("pvc://models", "models", ""),
            ("pvc://models/", "models", ""),
            ("pvc://models.team-a/wine/1/", "models.team-a", "wine/1"),
            ("pvc://m/wine//model.joblib", "m", "wine/model.joblib"),
        ],
    )
    def test_a_pvc_uri_names_a_claim_and_a_path_in_it(
        self, uri: str, claim: str, path: str
    ) -> None:
        pvc = parse_spec("wine", changed("model.uri", uri)).model.pvc
        assert pvc is not None
        assert (pvc.claim, pvc.path) == (claim, path)

    def test_other_schemes_name_no_claim(self) -> None:
        assert parse_spec("wine", BASE).model.pvc is None

    def test_parsing_copies_user_data(self) -> None:
        raw = changed("server.env", [{"name": "A", "value": "1"}])
        parsed = parse_spec("wine", raw)
        raw["server"]["env"][0]["value"] = "2"
        assert parsed.server.env[0]["value"] == "1"


class TestModelArtifactFields:
    """``model.sha256``, ``path``, ``storage`` and ``fetch``: read, defaulted, checked."""

    HTTP = "https://models.example/wine/1/model.tar.gz"

    def test_defaults(self) -> None:
        model = parse_spec("wine", changed("model.uri", self.HTTP)).model
        assert model.fetched and model.placed
        assert (model.sha256, model.path) == (None, spec_module.DEFAULT_MODEL_PATH)
        assert model.storage == spec_module.StorageSpec()
        assert model.fetch.container_resources == spec_module.DEFAULT_FETCH_RESOURCES

    def test_every_field_is_read(self) -> None:
        raw = changed("model.uri", "s3://models/wine/1/model.tar.gz")
        raw["model"].update(
            sha256="AB" * 32,
            path="/opt/ml/model/",
            storage={
                "secretRef": {"name": "s"},
                "endpoint": "https://store:8333",
                "region": "eu-west-1",
                "pathStyle": False,
                "caConfigMapRef": {"name": "ca", "key": "ca.crt"},
            },
            fetch={"sizeLimit": "1Gi", "resources": {"limits": {"memory": "1Gi"}}},
        )
        model = parse_spec("wine", raw).model
        assert model.sha256 == "ab" * 32
        assert model.path == "/opt/ml/model"
        assert model.storage == spec_module.StorageSpec(
            secret="s",
            endpoint="https://store:8333",
            region="eu-west-1",
            path_style=False,
            ca=spec_module.ConfigMapKeyRef("ca", "ca.crt"),
        )
        assert model.fetch.size_limit == "1Gi"
        assert model.fetch.container_resources == {"limits": {"memory": "1Gi"}}

    @pytest.mark.parametrize(
        ("uri", "fields", "words"),
        [
            (HTTP, {"sha256": "abc"}, "spec.model.sha256 must be 64 hexadecimal digits"),
            ("pvc://m/wine", {"sha256": "a" * 64}, "spec.model.sha256 is checked on one file"),
            ("s3://m/wine/", {"sha256": "a" * 64}, "not a prefix ending in '/'"),
            (HTTP, {"path": "models"}, "spec.model.path must be an absolute folder"),
            (HTTP, {"path": "/"}, "spec.model.path must be an absolute folder"),
            (HTTP, {"path": "/mnt/../etc"}, "spec.model.path must be an absolute folder"),
            (HTTP, {"path": "/."}, "spec.model.path must be an absolute folder"),  # the root
            (HTTP, {"path": "//./"}, "spec.model.path must be an absolute folder"),
            ("gs://m/wine", {"path": "/models"}, "spec.model.path is where Vigil puts"),
            (HTTP, {"storage": {"region": "r"}}, "spec.model.storage is for s3:// URIs"),
            ("pvc://m", {"storage": {"secretRef": {"name": "s"}}}, "spec.model.storage is for"),
            ("s3://m/k", {"storage": {"endpoint": "store:8333"}}, "endpoint must be an http"),
            ("s3://m/k", {"storage": {"secretRef": {"name": ""}}}, "secretRef.name is required"),
            ("pvc://m", {"fetch": {"sizeLimit": "1Gi"}}, "spec.model.fetch needs an http"),
        ],
    )
    def test_what_the_crd_refuses_is_an_invalid_spec_too(
        self, uri: str, fields: dict[str, Any], words: str
    ) -> None:
        raw = changed("model.uri", uri)
        raw["model"].update(fields)
        with pytest.raises(SpecError, match=re.escape(words)):
            parse_spec("wine", raw)

    def test_a_refused_uri_is_named_without_its_query(self) -> None:
        # A presigned URL's query holds its signature: InvalidSpec goes to status and Events.
        raw = changed("model.uri", "https://h/wine.tgz?X-Amz-Signature=secret")
        raw["model"]["storage"] = {"region": "r"}
        with pytest.raises(SpecError) as refused:
            parse_spec("wine", raw)
        assert "secret" not in str(refused.value) and "https://h/wine.tgz?…" in str(refused.value)

    def test_a_private_ca_serves_https_too(self) -> None:
        raw = changed("model.uri", self.HTTP)
        raw["model"]["storage"] = {"caConfigMapRef": {"name": "ca", "key": "k"}}
        assert parse_spec("wine", raw).model.storage.ca is not None


class TestRevision:
    def test_is_seven_hex_characters_and_deterministic(self) -> None:
        first = revision_of(BASE)
        assert re.fullmatch(r"[0-9a-f]{7}", first)
        assert revision_of(copy.deepcopy(BASE)) == first

    def test_key_order_does_not_matter(self) -> None:
        reordered = {key: BASE[key] for key in reversed(list(BASE))}
        assert revision_of(reordered) == revision_of(BASE)
        assert canonical_hash({"a": 1, "b": 2}) == canonical_hash({"b": 2, "a": 1})

    def test_defaults_written_or_omitted_give_the_same_revision(self) -> None:
        explicit = changed("server.port", 8080)
        explicit["server"]["protocol"] = "v2"
        explicit["monitoring"] = {"window": "5m"}
        explicit["server"]["readOnlyRootFilesystem"] = False
        assert revision_of(explicit) == revision_of(BASE)

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("replicas", 7),
            ("paused", True),
            ("rollout", {"replacement": {"steps": [{"canary": {"weight": 10}}]}}),
            ("monitoring.window", "10m"),
            ("monitoring.slo", {"maxErrorRate": 0.1}),
            ("monitoring.drift", {"method": "jsd"}),
            ("monitoring.metrics", {"source": "direct"}),
        ],
    )
    def test_what_does_not_shape_pods_keeps_the_revision(self, path: str, value: Any) -> None:
        assert revision_of(changed(path, value)) == revision_of(BASE)

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("model.version", "2"),
            ("model.name", "red-wine"),
            ("model.uri", "s3://m/wine/2"),
            ("server.image", "other:1"),
            ("server.port", 9000),
            ("server.protocol", "v1"),
            ("server.readinessPath", "/health"),
            ("server.command", ["serve"]),
            ("server.args", ["--fast"]),
            ("server.env", [{"name": "A", "value": "1"}]),
            ("server.resources", {"limits": {"memory": "1Gi"}}),
            ("server.readOnlyRootFilesystem", True),
            ("config", {"MLSERVER_PARALLEL_WORKERS": "0"}),
            ("monitoring.reference", {"configMapKeyRef": {"name": "r", "key": "k"}}),
            ("monitoring.sidecar", {"maxBodyBytes": 4096}),
            ("monitoring.sidecar", {"featureCap": 5}),
        ],
    )
    def test_what_shapes_pods_changes_the_revision(self, path: str, value: Any) -> None:
        assert revision_of(changed(path, value)) != revision_of(BASE)

    def test_the_sidecar_image_shapes_the_pods(self) -> None:
        assert revision_of(BASE, "other:2") != revision_of(BASE)

    @pytest.mark.parametrize(
        ("uri", "revision"),
        [(None, "ed917a7"), ("pvc://models/wine/1", "fba6e53"), ("gs://m/wine/1", "0f9c3d8")],
    )
    def test_pods_that_fetch_nothing_keep_the_revision_they_had_before_the_fields(
        self, uri: str | None, revision: str
    ) -> None:
        # Pinned: an upgrade of the operator must not roll out every ModelDeployment.
        raw = changed("model.uri", uri)
        raw["model"]["version"] = "1"
        assert revision_of(raw) == revision

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("model.path", "/opt/ml/model"),
            ("model.storage", {"region": "eu-west-1"}),
            ("model.storage", {"secretRef": {"name": "other"}}),
            ("model.fetch", {"sizeLimit": "1Gi"}),
            ("model.fetch", {"resources": {"limits": {"memory": "1Gi"}}}),
        ],
    )
    def test_how_the_pods_get_the_model_shapes_them(self, path: str, value: Any) -> None:
        assert revision_of(changed(path, value)) != revision_of(BASE)

    def test_the_default_path_written_or_omitted_is_one_revision(self) -> None:
        for uri in ("s3://m/wine/1", "pvc://models/wine/1"):
            explicit = changed("model.uri", uri)
            explicit["model"]["path"] = spec_module.DEFAULT_MODEL_PATH
            assert revision_of(explicit) == revision_of(changed("model.uri", uri))


class TestChangeKind:
    def classify(self, stable: dict | None, desired: dict) -> Change | None:
        desired_spec = parse_spec("wine", desired)
        if stable is None:
            return classify_change(
                stable_revision=None,
                stable_identity=None,
                desired_revision=compute_revision(desired_spec, SIDECAR),
                desired_identity=compute_identity(desired_spec),
            )
        stable_spec = parse_spec("wine", stable)
        return classify_change(
            stable_revision=compute_revision(stable_spec, SIDECAR),
            stable_identity=compute_identity(stable_spec),
            desired_revision=compute_revision(desired_spec, SIDECAR),
            desired_identity=compute_identity(desired_spec),
        )

    def test_no_stable_is_new(self) -> None:
        assert self.classify(None, BASE) is Change.NEW

    def test_same_revision_is_no_change(self) -> None:
        assert self.classify(BASE, changed("replicas", 9)) is None

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("model.version", "2"),
            ("model.name", "x"),
            ("model.uri", "s3://other"),
            ("model.uri", "pvc://models/wine/1"),
            ("model.sha256", "ab" * 32),
            ("server.image", "img:2"),
        ],
    )
    def test_model_or_image_is_a_replacement(self, path: str, value: Any) -> None:
        assert self.classify(BASE, changed(path, value)) is Change.REPLACEMENT

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("config", {"A": "1"}),
            ("server.resources", {"requests": {"cpu": "2"}}),
            ("server.env", [{"name": "A", "value": "1"}]),
            ("server.port", 9000),
            ("server.readOnlyRootFilesystem", True),
            ("model.path", "/opt/ml/model"),
            ("model.storage", {"secretRef": {"name": "s"}, "region": "eu-west-1"}),
            ("model.fetch", {"sizeLimit": "10Gi"}),
        ],
    )
    def test_anything_else_is_a_tweak(self, path: str, value: Any) -> None:
        assert self.classify(BASE, changed(path, value)) is Change.TWEAK

    def test_unknown_stable_identity_is_treated_as_replacement(self) -> None:
        assert (
            classify_change(
                stable_revision="aaaaaaa",
                stable_identity=None,
                desired_revision="bbbbbbb",
                desired_identity="x",
            )
            is Change.REPLACEMENT
        )


class TestWhatTheSchemaDidNotCheckNamesItsField:
    """An object stored before a CRD rule, or by a client that skips validation: the
    rollout or monitoring problem says which field, not only the parser's words."""

    @pytest.mark.parametrize(
        ("path", "value", "words"),
        [
            (
                "rollout",
                {"tweak": {"steps": [{"canary": {}}]}},
                "spec.rollout.tweak.steps[0] has no weight",
            ),
            (
                "rollout",
                {
                    "replacement": {
                        "steps": [{"shadow": {}}, {"canary": {"weight": 20, "duration": "1d"}}]
                    }
                },
                "spec.rollout.replacement.steps[1]: not a duration: '1d'",
            ),
            (
                "rollout",
                {"replacement": {"steps": ["canary"]}},
                "spec.rollout.replacement.steps[0] must be an object",
            ),
            (
                "rollout",
                {"analysis": {"interval": "30 s"}},
                "spec.rollout.analysis.interval: not a duration",
            ),
            (
                "rollout",
                {"progressDeadline": "1d"},
                "spec.rollout.progressDeadline: not a duration",
            ),
        ],
    )
    def test_a_rollout_problem_names_the_field(self, path: str, value: Any, words: str) -> None:
        parsed = parse_spec("wine", changed(path, value))
        assert words in (parsed.rollout.problem or "")

    def test_a_monitoring_problem_names_the_field(self) -> None:
        parsed = parse_spec("wine", changed("monitoring", {"window": "1 s"}))
        assert "spec.monitoring.window: not a duration: '1 s'" in (parsed.monitoring.problem or "")


class TestARawServersRollout:
    """Its answers are never read: a judge of them would hold every rollout to its deadline."""

    def raw(self, rollout: dict[str, Any]) -> Any:
        raw = changed("server.protocol", "raw")
        raw["rollout"] = rollout
        return parse_spec("wine", raw)

    def test_a_performance_gate_is_a_problem_naming_it(self) -> None:
        gate = {"analysis": {"performance": {"minAccuracy": 0.9}}}
        problem = self.raw({**gate, "tweak": {"steps": [{"canary": {"weight": 20}}]}}).rollout
        assert (problem.problem or "").startswith("spec.rollout.analysis.performance: a raw server")
        assert problem.tweak == ()  # blue/green until fixed, as for every rollout problem

    def test_a_shadow_step_is_a_problem(self) -> None:
        rollout = self.raw({"replacement": {"steps": [{"shadow": {}}]}}).rollout
        assert "no step can shadow" in (rollout.problem or "")

    def test_the_status_screens_reading_of_the_rollout_says_so_too(self) -> None:
        # kubectl vigil status reads the rollout alone (rollout_or_defaults): it listed the
        # steps and the gate while the operator held the rollout.
        raw = changed("server.protocol", "raw")
        raw["rollout"] = {"analysis": {"performance": {"minAccuracy": 0.9}}}
        assert "a raw server" in (spec_module.rollout_or_defaults(raw).problem or "")

    def test_canary_steps_alone_are_fine(self) -> None:
        rollout = self.raw({"tweak": {"steps": [{"canary": {"weight": 20}}]}}).rollout
        assert rollout.problem is None and len(rollout.tweak) == 1
