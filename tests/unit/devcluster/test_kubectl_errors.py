"""A failed kubectl says why in the test's traceback, not only its exit status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vigil.devcluster.cluster import KubectlError, run_kubectl

REFUSAL = 'The ModelDeployment "wine" is invalid: spec.config.E2E_TWEAK: must be of type string'


def test_the_api_servers_reason_is_in_the_error_message(tmp_path: Path) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!/bin/sh\necho '{REFUSAL}' >&2\nexit 1\n")
    kubectl.chmod(0o755)
    with pytest.raises(subprocess.CalledProcessError) as raised:
        run_kubectl(kubectl, tmp_path / "kubeconfig", "apply", "-f", "-", input="{}")
    assert isinstance(raised.value, KubectlError)
    assert raised.value.returncode == 1
    assert "kubectl apply -f - failed" in str(raised.value)
    assert REFUSAL in str(raised.value)
