"""Desired children: names, labels, owner references, pod shape, security, change detection."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from core_world import World

from vigil.core import naming
from vigil.core.desired import (
    FETCH_CONTAINER,
    MODEL_VOLUME,
    SERVER_TMP_VOLUME,
    Owner,
    RevisionInfo,
    desired_configmap,
    desired_deployment,
    desired_peers_service,
    desired_service,
    needs_write,
    sidecar_settings,
)
from vigil.core.reconcile import Apply, decide
from vigil.core.spec import DEFAULT_MODEL_PATH, parse_spec
from vigil.fetch.main import build_parser
from vigil.sidecar.config import settings_from_mapping

OWNER = Owner(name="wine", namespace="ml", uid="uid-1")
INFO = RevisionInfo(revision="abc1234", identity="ident", role=naming.ROLE_STABLE)
SIDECAR = "ghcr.io/vigil-dev/vigil:test"


ROOT = Path(__file__).resolve().parents[3]


def parsed(**extra: Any):
    raw: dict[str, Any] = {
        "model": {"name": "wine", "version": "3", "uri": "gs://m/wine/3"},
        "server": {"image": "seldonio/mlserver:1.7.1-sklearn"},
    }
    for path, value in extra.items():
        target = raw
        *parents, leaf = path.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return parse_spec("wine", raw)


def deployment(**extra: Any) -> dict[str, Any]:
    return desired_deployment(OWNER, parsed(**extra), INFO, sidecar_image=SIDECAR, replicas=2)


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in manifest["spec"]["template"]["spec"]["containers"]}


class TestNamesAndLabels:
    def test_deterministic_names(self) -> None:
        assert naming.deployment_name("wine", "abc1234") == "wine-abc1234"
        assert naming.sidecar_configmap_name("wine", "abc1234") == "wine-abc1234-sidecar"
        assert naming.service_name("wine") == "wine"
        assert deployment()["metadata"]["name"] == "wine-abc1234"
        assert desired_service(OWNER, "abc1234")["metadata"]["name"] == "wine"
        cm = desired_configmap(OWNER, parsed(), INFO)
        assert cm["metadata"]["name"] == "wine-abc1234-sidecar"

    def test_children_carry_only_vigil_labels(self) -> None:
        for manifest in (
            deployment(),
            desired_service(OWNER, "abc1234"),
            desired_configmap(OWNER, parsed(), INFO),
        ):
            labels = manifest["metadata"]["labels"]
            assert set(labels) <= {
                naming.LABEL_MODEL_DEPLOYMENT,
                naming.LABEL_REVISION,
                naming.LABEL_ROLE,
                naming.LABEL_MANAGED_BY,
            }
            assert labels[naming.LABEL_MODEL_DEPLOYMENT] == "wine"

    def test_roles(self) -> None:
        assert deployment()["metadata"]["labels"][naming.LABEL_ROLE] == "stable"
        service = desired_service(OWNER, "abc1234")
        assert service["metadata"]["labels"][naming.LABEL_ROLE] == "serving"
        assert naming.LABEL_REVISION not in service["metadata"]["labels"]
        candidate = RevisionInfo("abc1234", "ident", naming.ROLE_CANDIDATE)
        manifest = desired_deployment(OWNER, parsed(), candidate, sidecar_image=SIDECAR, replicas=1)
        assert manifest["metadata"]["labels"][naming.LABEL_ROLE] == "candidate"

    def test_controller_owner_reference(self) -> None:
        for manifest in (deployment(), desired_service(OWNER, "abc1234")):
            (ref,) = manifest["metadata"]["ownerReferences"]
            assert ref == {
                "apiVersion": "vigil.dev/v1alpha1",
                "kind": "ModelDeployment",
                "name": "wine",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }

    @pytest.mark.parametrize(
        ("name", "ok"),
        [
            ("wine", True),
            ("a" * 55, True),
            ("a" * 56, False),
            ("wine.v2", False),
            ("1wine", False),
            ("Wine", False),
        ],
    )
    def test_name_problems(self, name: str, ok: bool) -> None:
        assert (naming.name_problem(name, 7) is None) is ok


class TestDeployment:
    def test_two_containers_server_then_sidecar(self) -> None:
        found = containers(deployment())
        assert list(found) == ["server", "sidecar"]
        assert found["server"]["image"] == "seldonio/mlserver:1.7.1-sklearn"
        assert found["sidecar"]["image"] == SIDECAR
        assert found["sidecar"]["command"] == [
            "vigil-sidecar",
            "--config",
            "/etc/vigil/sidecar.json",
        ]

    def test_the_named_port_http_is_the_sidecars(self) -> None:
        found = containers(deployment())
        ports = {(c, p["name"]): p["containerPort"] for c in found for p in found[c]["ports"]}
        assert ports == {
            ("server", "model"): 8080,
            ("sidecar", "http"): 8000,
            ("sidecar", "metrics"): 9090,
            ("sidecar", "feedback"): 8001,
        }

    def test_selector_and_pod_labels_name_the_revision(self) -> None:
        manifest = deployment()
        expected = {naming.LABEL_MODEL_DEPLOYMENT: "wine", naming.LABEL_REVISION: "abc1234"}
        assert manifest["spec"]["selector"]["matchLabels"] == expected
        assert manifest["spec"]["template"]["metadata"]["labels"] == expected
        assert manifest["spec"]["replicas"] == 2

    def test_pods_pass_podsecurity_restricted(self) -> None:
        pod = deployment()["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsNonRoot"] is True
        sidecar = containers(deployment())["sidecar"]["securityContext"]
        assert sidecar["readOnlyRootFilesystem"] is True
        assert sidecar["runAsUser"] > 0

    def test_the_sidecar_writes_only_to_its_scratch_volume(self) -> None:
        sidecar = containers(deployment())["sidecar"]
        mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        assert env["TMPDIR"] == mounts["sidecar-tmp"]["mountPath"]
        assert all(m.get("readOnly") for name, m in mounts.items() if name != "sidecar-tmp")

    def test_server_environment(self) -> None:
        env = containers(
            deployment(
                config={"MLSERVER_PARALLEL_WORKERS": "0"},
                server__env=[
                    {"name": "MODEL_VERSION", "value": "override"},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ],
            )
        )["server"]["env"]
        by_name = {item["name"]: item for item in env}
        assert by_name["MODEL_NAME"]["value"] == "wine"
        assert by_name["STORAGE_URI"]["value"] == "gs://m/wine/3"
        assert by_name["MLSERVER_PARALLEL_WORKERS"]["value"] == "0"
        assert by_name["MODEL_VERSION"]["value"] == "override"  # the user's env wins
        assert "valueFrom" in by_name["S"]
        assert len(env) == len(by_name)  # names unique (server-side apply keys env by name)

    def test_no_storage_uri_without_model_uri(self) -> None:
        spec = parse_spec("wine", {"model": {"version": "1"}, "server": {"image": "i"}})
        manifest = desired_deployment(OWNER, spec, INFO, sidecar_image=SIDECAR, replicas=1)
        names = [e["name"] for e in containers(manifest)["server"]["env"]]
        assert "STORAGE_URI" not in names

    def test_server_overrides_reach_the_container(self) -> None:
        server = containers(
            deployment(
                server__command=["serve"],
                server__args=["--x"],
                server__resources={"limits": {"memory": "1Gi"}},
                server__port=9000,
                server__readinessPath="/ok",
            )
        )["server"]
        assert server["command"] == ["serve"]
        assert server["args"] == ["--x"]
        assert server["resources"] == {"limits": {"memory": "1Gi"}}

    def test_the_kubelet_probes_the_server_only_through_the_sidecar(self) -> None:
        # The kubelet sends httpGet probes to the pod IP; a server listening on
        # 127.0.0.1 only (docs/howto/model-server.md's example) is not there. Every
        # probe goes to the sidecar, whose readiness asks the server's readinessPath
        # over loopback (tests/unit/sidecar: readiness follows the model server).
        manifest = deployment(server__port=9000, server__readinessPath="/ok")
        probes = [
            (name, kind, container[kind]["httpGet"]["port"])
            for name, container in containers(manifest).items()
            for kind in ("readinessProbe", "livenessProbe", "startupProbe")
            if kind in container
        ]
        assert probes == [
            ("sidecar", "readinessProbe", "http"),
            ("sidecar", "livenessProbe", "http"),
        ]
        configmap = desired_configmap(
            OWNER, parsed(server__port=9000, server__readinessPath="/ok"), INFO
        )
        settings = json.loads(configmap["data"]["sidecar.json"])
        assert settings["upstream"]["url"] == "http://127.0.0.1:9000"
        assert settings["upstream"]["readinessPath"] == "/ok"
        page = (ROOT / "docs" / "howto" / "model-server.md").read_text()
        assert 'ThreadingHTTPServer(("127.0.0.1", 8080), Handler)' in page

    def test_without_reference_there_is_no_reference_volume(self) -> None:
        pod = deployment()["spec"]["template"]["spec"]
        assert "reference" not in {v["name"] for v in pod["volumes"]}

    def test_reference_profile_is_mounted_read_only(self) -> None:
        manifest = deployment(
            monitoring={"reference": {"configMapKeyRef": {"name": "wine-ref", "key": "p.json"}}}
        )
        pod = manifest["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["reference"]["configMap"] == {
            "name": "wine-ref",
            "items": [{"key": "p.json", "path": "p.json"}],
        }
        mounts = {m["name"]: m for m in containers(manifest)["sidecar"]["volumeMounts"]}
        assert mounts["reference"]["readOnly"] is True
        assert volumes["sidecar-config"]["configMap"]["name"] == "wine-abc1234-sidecar"

    def test_records_model_identity_for_later_classification(self) -> None:
        annotations = deployment()["metadata"]["annotations"]
        assert annotations[naming.ANNOTATION_IDENTITY] == "ident"
        assert annotations[naming.ANNOTATION_MODEL_VERSION] == "3"
        assert annotations[naming.ANNOTATION_IMAGE] == "seldonio/mlserver:1.7.1-sklearn"


class TestModelFromAClaim:
    """``model.uri: pvc://<claim>/<path>``: the claim mounted read-only where the server looks."""

    def test_the_claims_path_is_mounted_read_only_at_the_model_dir(self) -> None:
        manifest = deployment(model__uri="pvc://models/wine/2")
        pod = manifest["spec"]["template"]["spec"]
        assert {
            "name": MODEL_VOLUME,
            "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
        } in pod["volumes"]
        server = containers(manifest)["server"]
        assert server["volumeMounts"] == [
            {
                "name": MODEL_VOLUME,
                "mountPath": DEFAULT_MODEL_PATH,
                "readOnly": True,
                "subPath": "wine/2",
            }
        ]
        env = {item["name"]: item["value"] for item in server["env"]}
        assert env["MODEL_PATH"] == DEFAULT_MODEL_PATH == "/mnt/models"
        assert env["STORAGE_URI"] == "pvc://models/wine/2"

    def test_the_whole_claim_without_a_path(self) -> None:
        server = containers(deployment(model__uri="pvc://models"))["server"]
        assert server["volumeMounts"] == [
            {"name": MODEL_VOLUME, "mountPath": DEFAULT_MODEL_PATH, "readOnly": True}
        ]

    def test_the_sidecar_mounts_no_model(self) -> None:
        sidecar = containers(deployment(model__uri="pvc://models/wine/2"))["sidecar"]
        assert MODEL_VOLUME not in {mount["name"] for mount in sidecar["volumeMounts"]}

    def test_other_schemes_are_the_servers_to_load_mounting_nothing(self) -> None:
        manifest = deployment()
        server = containers(manifest)["server"]
        assert "volumeMounts" not in server
        assert "MODEL_PATH" not in {item["name"] for item in server["env"]}
        volumes = manifest["spec"]["template"]["spec"]["volumes"]
        assert MODEL_VOLUME not in {volume["name"] for volume in volumes}


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def fetcher(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(manifest)["initContainers"]
    assert container["name"] == FETCH_CONTAINER
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


class TestModelFetched:
    """``http(s)://`` and ``s3://``: vigil-fetch fills an emptyDir the server mounts read-only."""

    URI = "https://models.example/wine/3/model.tar.gz"

    def test_vigil_fetch_from_the_sidecar_image_fills_the_folder_before_the_server(self) -> None:
        manifest = deployment(model__uri=self.URI)
        container = fetcher(manifest)
        assert container["image"] == SIDECAR
        assert container["command"] == ["vigil-fetch"]
        assert container["args"] == [self.URI, "--dest", DEFAULT_MODEL_PATH]
        assert container["volumeMounts"] == [
            {"name": MODEL_VOLUME, "mountPath": DEFAULT_MODEL_PATH}
        ]
        assert container["terminationMessagePolicy"] == "File"
        assert container["resources"] == {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
        assert {"name": MODEL_VOLUME, "emptyDir": {}} in pod_spec(manifest)["volumes"]

    def test_the_server_mounts_the_folder_read_only_and_the_sidecar_nothing(self) -> None:
        manifest = deployment(model__uri=self.URI)
        server, sidecar = containers(manifest)["server"], containers(manifest)["sidecar"]
        assert server["volumeMounts"] == [
            {"name": MODEL_VOLUME, "mountPath": DEFAULT_MODEL_PATH, "readOnly": True}
        ]
        assert env_of(server)["MODEL_PATH"] == DEFAULT_MODEL_PATH
        assert env_of(server)["STORAGE_URI"] == self.URI
        assert MODEL_VOLUME not in {mount["name"] for mount in sidecar["volumeMounts"]}

    def test_the_fetcher_runs_restricted_as_vigils_user_on_a_read_only_root(self) -> None:
        context = fetcher(deployment(model__uri=self.URI))["securityContext"]
        assert context == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "readOnlyRootFilesystem": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
        }

    def test_the_digest_and_the_size_limit_reach_the_fetcher_and_the_volume(self) -> None:
        digest = "ab" * 32
        manifest = deployment(
            model__uri=self.URI, model__sha256=digest.upper(), model__fetch={"sizeLimit": "2Gi"}
        )
        assert fetcher(manifest)["args"][3:] == ["--sha256", digest, "--size-limit", "2Gi"]
        volumes = pod_spec(manifest)["volumes"]
        assert {"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}} in volumes

    def test_the_fetchers_arguments_are_ones_vigil_fetch_accepts(self) -> None:
        manifest = deployment(
            model__uri="s3://models/wine/3/model.tar.gz",
            model__sha256="ab" * 32,
            model__fetch={"sizeLimit": "2Gi"},
            model__storage={"caConfigMapRef": {"name": "ca", "key": "ca.crt"}},
        )
        container = fetcher(manifest)
        assert container["command"] == ["vigil-fetch"]
        args = build_parser().parse_args(container["args"])
        assert (args.uri, args.sha256) == ("s3://models/wine/3/model.tar.gz", "ab" * 32)
        assert args.ca_file == "/var/run/vigil/ca/ca.crt" and args.size_limit == "2Gi"

    def test_the_spec_sets_the_fetchers_resources(self) -> None:
        resources = {"limits": {"memory": "1Gi"}}
        manifest = deployment(model__uri=self.URI, model__fetch={"resources": resources})
        assert fetcher(manifest)["resources"] == resources

    def test_a_store_and_its_secret_reach_the_fetcher_alone(self) -> None:
        manifest = deployment(
            model__uri="s3://models/wine/3/",
            model__storage={
                "secretRef": {"name": "wine-artifacts"},
                "endpoint": "http://seaweedfs.storage.svc:8333",
                "region": "eu-west-1",
                "pathStyle": True,
            },
        )
        env = env_of(fetcher(manifest))
        assert env["AWS_ENDPOINT_URL_S3"] == "http://seaweedfs.storage.svc:8333"
        assert env["AWS_REGION"] == "eu-west-1"
        assert env["VIGIL_S3_ADDRESSING"] == "path"
        assert env["AWS_ACCESS_KEY_ID"] == {
            "secretKeyRef": {"name": "wine-artifacts", "key": "AWS_ACCESS_KEY_ID"}
        }
        assert env["AWS_SECRET_ACCESS_KEY"] == {
            "secretKeyRef": {"name": "wine-artifacts", "key": "AWS_SECRET_ACCESS_KEY"}
        }
        assert env["AWS_SESSION_TOKEN"] == {
            "secretKeyRef": {"name": "wine-artifacts", "key": "AWS_SESSION_TOKEN", "optional": True}
        }
        # Nowhere else: not in the server, not in the sidecar, not as a volume.
        text = json.dumps([containers(manifest), pod_spec(manifest)["volumes"]])
        assert "wine-artifacts" not in text
        assert pod_spec(manifest)["automountServiceAccountToken"] is False

    @pytest.mark.parametrize(("path_style", "word"), [(False, "virtual"), (None, None)])
    def test_addressing_is_left_to_the_fetcher_unless_the_spec_says(
        self, path_style: bool | None, word: str | None
    ) -> None:
        storage = {"pathStyle": path_style} if path_style is not None else {"region": "r"}
        env = env_of(fetcher(deployment(model__uri="s3://m/k", model__storage=storage)))
        assert env.get("VIGIL_S3_ADDRESSING") == word

    def test_a_private_ca_is_mounted_into_the_fetcher(self) -> None:
        manifest = deployment(
            model__uri=self.URI,
            model__storage={"caConfigMapRef": {"name": "corp", "key": "ca.crt"}},
        )
        container = fetcher(manifest)
        assert container["args"][-2:] == ["--ca-file", "/var/run/vigil/ca/ca.crt"]
        assert {"name": "vigil-fetch-ca", "mountPath": "/var/run/vigil/ca", "readOnly": True} in (
            container["volumeMounts"]
        )
        assert {
            "name": "vigil-fetch-ca",
            "configMap": {"name": "corp", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        } in pod_spec(manifest)["volumes"]

    @pytest.mark.parametrize("uri", [URI, "pvc://models/wine/3"])
    def test_both_schemes_put_the_model_at_the_specs_path(self, uri: str) -> None:
        manifest = deployment(model__uri=uri, model__path="/opt/ml/model")
        server = containers(manifest)["server"]
        assert [m["mountPath"] for m in server["volumeMounts"]] == ["/opt/ml/model"]
        assert env_of(server)["MODEL_PATH"] == "/opt/ml/model"

    def test_nothing_is_fetched_for_a_claim_or_a_servers_own_scheme(self) -> None:
        for uri in ("pvc://models/wine/3", "gs://m/wine/3"):
            assert "initContainers" not in pod_spec(deployment(model__uri=uri))


class TestReadOnlyServer:
    """``server.readOnlyRootFilesystem`` (opt-in): a read-only root and a writable /tmp."""

    def test_the_server_root_is_read_only_with_a_writable_tmp(self) -> None:
        manifest = deployment(server__readOnlyRootFilesystem=True, model__uri="pvc://m/w")
        server = containers(manifest)["server"]
        assert server["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": SERVER_TMP_VOLUME, "mountPath": "/tmp"} in server["volumeMounts"]
        assert len(server["volumeMounts"]) == 2  # and the model
        volumes = manifest["spec"]["template"]["spec"]["volumes"]
        assert {"name": SERVER_TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}} in volumes

    def test_by_default_the_server_root_stays_writable(self) -> None:
        server = containers(deployment())["server"]
        assert "readOnlyRootFilesystem" not in server["securityContext"]
        assert "volumeMounts" not in server


class TestServiceAndSettings:
    def test_service_selects_the_serving_revision_through_the_sidecar_port(self) -> None:
        service = desired_service(OWNER, "abc1234")
        assert service["spec"]["selector"] == {
            naming.LABEL_MODEL_DEPLOYMENT: "wine",
            naming.LABEL_REVISION: "abc1234",
        }
        port, feedback = service["spec"]["ports"]
        assert port["targetPort"] == "http"
        assert port["name"] == "http"
        # Labels through the model's Service, on their own port.
        assert (feedback["name"], feedback["port"], feedback["targetPort"]) == (
            "feedback",
            8001,
            "feedback",
        )

    def test_the_peers_service_lists_every_pod_of_the_model_deployment(self) -> None:
        service = desired_peers_service(OWNER)
        assert service["metadata"]["name"] == "wine-peers"
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"] == {naming.LABEL_MODEL_DEPLOYMENT: "wine"}

    def test_feedback_is_on_and_finds_its_peers_through_that_service(self) -> None:
        settings = settings_from_mapping(sidecar_settings(OWNER, parsed(), INFO))
        assert settings.feedback.enabled and settings.feedback.port == 8001
        namespace = OWNER.namespace
        assert settings.feedback.peers == (f"wine-peers.{namespace}.svc:8001",)
        env = {e["name"]: e for e in containers(deployment())["sidecar"]["env"]}
        assert env["VIGIL_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"

    def test_settings_are_accepted_by_the_sidecar(self) -> None:
        spec = parsed(monitoring={"reference": {"configMapKeyRef": {"name": "r", "key": "p.json"}}})
        settings = settings_from_mapping(sidecar_settings(OWNER, spec, INFO))
        assert settings.model_name == "wine"
        assert settings.model_version == "3"
        assert settings.revision == "abc1234"
        assert settings.role == "stable"
        assert settings.upstream == "http://127.0.0.1:8080"
        assert settings.listen_port == 8000
        assert settings.metrics_port == 9090
        assert settings.reference_profile == "/var/lib/vigil/reference/p.json"
        assert settings.shutdown_delay_seconds == 5

    def test_the_model_server_outlives_the_sidecars_shutdown_delay(self) -> None:
        # All containers get SIGTERM at once: the server's preStop sleep keeps it
        # answering while the sidecar still accepts requests (no 502 at a switch).
        settings = settings_from_mapping(sidecar_settings(OWNER, parsed(), INFO))
        server = containers(deployment())["server"]
        sleep = server["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep > settings.shutdown_delay_seconds
        pod = deployment()["spec"]["template"]["spec"]
        assert sleep < pod.get("terminationGracePeriodSeconds", 30)

    def test_the_grace_period_covers_the_sidecars_whole_shutdown(self) -> None:
        # Delay, drain, then the feedback handoff (its wait is half its timeout).
        settings = settings_from_mapping(sidecar_settings(OWNER, parsed(), INFO))
        stopping = (
            settings.shutdown_delay_seconds
            + settings.drain_timeout_seconds
            + 1.5 * settings.feedback.handoff_timeout_seconds
        )
        assert stopping < deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    def test_settings_without_reference_leave_drift_off(self) -> None:
        settings = settings_from_mapping(sidecar_settings(OWNER, parsed(), INFO))
        assert settings.reference_profile == ""
        assert not settings.shadow.enabled

    def test_configmap_holds_the_settings_as_json(self) -> None:
        cm = desired_configmap(OWNER, parsed(), INFO)
        assert json.loads(cm["data"]["sidecar.json"]) == sidecar_settings(OWNER, parsed(), INFO)


class TestPullPolicy:
    """The containers that run Vigil's image say how to pull it: left out, Kubernetes pulls
    a ``:latest`` (or untagged) sidecar image Always, which fails where no registry has it."""

    URI = "https://models.example/wine/3/model.tar.gz"

    def test_injected_containers_carry_the_operators_pull_policy(self) -> None:
        default = deployment(model__uri=self.URI)
        assert containers(default)["sidecar"]["imagePullPolicy"] == "IfNotPresent"
        assert fetcher(default)["imagePullPolicy"] == "IfNotPresent"
        never = desired_deployment(
            OWNER,
            parsed(model__uri=self.URI),
            INFO,
            sidecar_image="vigil.local/vigil:latest",
            replicas=1,
            sidecar_pull_policy="Never",
        )
        assert containers(never)["sidecar"]["imagePullPolicy"] == "Never"
        assert fetcher(never)["imagePullPolicy"] == "Never"
        # The model server's image is the user's: its policy stays Kubernetes' default.
        assert "imagePullPolicy" not in containers(never)["server"]

    def test_the_pull_policy_reaches_the_pods_without_a_new_revision(self) -> None:
        """Not part of what a revision is: another policy re-applies the same Deployment
        (its pods replaced in place), never a new revision rolled out as a tweak."""
        world = World()
        world.reconcile()  # the operator's default policy
        (name,) = [n for (kind, n) in world.objects if kind == "Deployment"]
        deployed = world.objects[("Deployment", name)]
        assert containers(deployed)["sidecar"]["imagePullPolicy"] == "IfNotPresent"
        revision, history = world.status["revision"], world.status["history"]

        plan = decide(dataclasses.replace(world.observe(), sidecar_pull_policy="Never"))
        writes = [a for a in plan.actions if isinstance(a, Apply) and a.kind == "Deployment"]
        assert [a.name for a in writes] == [name]
        rewritten = dict(writes[0].manifest)
        assert containers(rewritten)["sidecar"]["imagePullPolicy"] == "Never"
        assert plan.status.get("revision", revision) == revision
        assert plan.status.get("history", history) == history
        # Nothing else in the pod template moved: the pods come back as they were.
        before, after = (
            copy.deepcopy(d["spec"]["template"]["spec"]["containers"])
            for d in (deployed, rewritten)
        )
        for container in (*before, *after):
            container.pop("imagePullPolicy", None)
        assert after == before


class TestNeedsWrite:
    def live(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """What the API server returns: our manifest plus defaulted and server-set fields."""
        actual = copy.deepcopy(manifest)
        actual["metadata"]["resourceVersion"] = "42"
        actual["metadata"]["uid"] = "child-uid"
        actual["metadata"]["labels"]["extra"] = "someone-else"
        if actual["kind"] == "Deployment":
            actual["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
            actual["status"] = {"readyReplicas": 2}
        if actual["kind"] == "Service":
            actual["spec"]["clusterIP"] = "10.0.0.1"
        return actual

    @pytest.mark.parametrize("kind", ["Deployment", "Service", "ConfigMap"])
    def test_missing_object_needs_a_write(self, kind: str) -> None:
        manifests = {
            "Deployment": deployment(),
            "Service": desired_service(OWNER, "abc1234"),
            "ConfigMap": desired_configmap(OWNER, parsed(), INFO),
        }
        assert needs_write(manifests[kind], None)
        assert not needs_write(manifests[kind], self.live(manifests[kind]))

    def test_changed_desired_content_needs_a_write(self) -> None:
        assert needs_write(deployment(server__image="other:1"), self.live(deployment()))

    def test_hash_is_stable_and_content_sensitive(self) -> None:
        first = deployment()["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH]
        assert deployment()["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH] == first
        other = deployment(config={"A": "1"})["metadata"]["annotations"]
        assert other[naming.ANNOTATION_APPLIED_HASH] != first

    def test_other_kinds_compare_by_hash_labels_and_owner(self) -> None:
        desired = copy.deepcopy(desired_service(OWNER, "abc1234"))
        desired["kind"] = "Secret"
        assert not needs_write(desired, self.live(desired))

    def test_manual_scale_is_detected(self) -> None:
        live = self.live(deployment())
        live["spec"]["replicas"] = 5
        assert needs_write(deployment(), live)

    def test_edited_service_selector_is_detected(self) -> None:
        desired = desired_service(OWNER, "abc1234")
        live = self.live(desired)
        live["spec"]["selector"]["vigil.dev/revision"] = "zzz"
        assert needs_write(desired, live)

    def test_edited_configmap_is_detected(self) -> None:
        desired = desired_configmap(OWNER, parsed(), INFO)
        live = self.live(desired)
        live["data"]["sidecar.json"] = "{}"
        assert needs_write(desired, live)

    def test_stripped_label_or_owner_is_detected(self) -> None:
        live = self.live(deployment())
        del live["metadata"]["labels"][naming.LABEL_ROLE]
        assert needs_write(deployment(), live)
        live = self.live(deployment())
        live["metadata"]["ownerReferences"] = []
        assert needs_write(deployment(), live)


class TestProgressDeadline:
    """How long a revision's Deployment may take to come up before it counts as failed."""

    def test_a_fetched_model_has_the_rollouts_progress_deadline(self) -> None:
        # A download may outlast the usual 10 minutes: a 20-minute fetch failed the
        # revision while it ran (RolloutFailed, the candidate deleted).
        default = deployment(model__uri="s3://models/wine/3")
        assert default["spec"]["progressDeadlineSeconds"] == 1800
        longer = deployment(model__uri="https://h/wine.tgz", rollout__progressDeadline="45m")
        assert longer["spec"]["progressDeadlineSeconds"] == 2700

    @pytest.mark.parametrize("uri", ["gs://m/wine/3", "pvc://models/wine"])
    def test_other_models_keep_ten_minutes(self, uri: str) -> None:
        manifest = deployment(model__uri=uri, rollout__progressDeadline="45m")
        assert manifest["spec"]["progressDeadlineSeconds"] == 600
