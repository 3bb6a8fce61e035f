"""Strings the project writes as YAML reach the API server as the strings they are.

kubectl reads YAML with Go's rules, which take more plain scalars for numbers and
booleans than PyYAML does (``63e1`` is 630 to kubectl): a ModelDeployment whose
config held a random ``63e1`` was refused in a CI run. Checked here with the real
kubectl and API server (server-side dry run: nothing is stored).
"""

from __future__ import annotations

import json

from kit.kube import Kube

from vigil.common import kube_yaml

# Each a number, a boolean or null to kubectl if written plainly.
MISREAD = ["63e1", "1e10", "-1e-3", "+.5", "0o17", "0x1F", "0b101", "1_000", "0777", "y", "N"]
STRINGS = {f"K{index}": value for index, value in enumerate([*MISREAD, "ON", "null", "~", ""])}


def test_strings_go_would_read_as_numbers_or_booleans_arrive_as_strings(
    kube: Kube, vigil_installed: str
) -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strings"}}
    model_deployment = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "strings"},
        "spec": {
            "model": {"name": "wine", "version": "1", "uri": "pvc://models/wine-1"},
            "server": {"image": "vigil.local/mlserver-sklearn:any"},
            "config": STRINGS,
        },
    }
    text = kube_yaml.dump_all([configmap | {"data": STRINGS}, model_deployment])
    result = kube.run("apply", "--dry-run=server", "-o", "json", "-f", "-", input=text)
    stored = {item["kind"]: item for item in json.loads(result.stdout)["items"]}
    assert stored["ConfigMap"]["data"] == STRINGS
    assert stored["ModelDeployment"]["spec"]["config"] == STRINGS
