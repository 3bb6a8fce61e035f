"""The demo's models as a team keeps them: archives in its S3 store, named with a Secret."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from vigil.devcluster import demo
from vigil.devcluster.models import train_wine


@pytest.mark.slow
def test_a_demo_model_is_an_archive_in_the_store_named_with_the_readers_secret(
    tmp_path: Path,
) -> None:
    model = train_wine(tmp_path / "wine-4", version="4")
    body = yaml.safe_load(demo.model_deployment(model, server_image="vigil.local/mlserver"))
    assert body["spec"]["model"]["uri"] == "s3://models/wine-4/model.tar.gz"
    assert body["spec"]["model"]["storage"] == {
        "secretRef": {"name": "wine-artifacts"},
        "endpoint": "http://seaweedfs.vigil-demo.svc:8333",
    }
    with tarfile.open(fileobj=io.BytesIO(demo.model_archive(model))) as tar:
        # Unpacked at /mnt/models, MLServer's model folder: the files at the top.
        names = tar.getnames()
    assert sorted(names) == sorted(p.name for p in model.folder.iterdir())
    assert "model-settings.json" in names
