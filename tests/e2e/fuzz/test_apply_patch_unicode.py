"""Regression: server-side apply of a manifest with characters outside the BMP.

The spec fuzzing found it: an emoji in spec.server.command (or args, env,
config) made every apply of the Deployment fail with HTTP 400 "found invalid
Unicode character escape code" (the API server parses apply patches as YAML,
and json.dumps writes such characters as surrogate pairs), so the
ModelDeployment never got a status. The kube client now writes them as YAML's
8-digit escapes.
"""

from __future__ import annotations

import json

import pytest
import yaml

from vigil.kube.client import yaml_safe_json

SAMPLES = [
    "\U0001f600",
    "mlserver --flag=\U0001f4a9\U0001f4a9",
    "\\ud83d\\ude00 is text, not an escape",
    "\\\U0001f600",
    "\u00e9\u2028\u0000\ufeff",
    "\U0010ffff",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_apply_body_reads_the_same_as_yaml_and_as_json(text: str) -> None:
    doc = {"spec": {"command": [text], "env": [{"name": "A", "value": text}]}}
    body = yaml_safe_json(json.dumps(doc))
    assert yaml.safe_load(body) == doc


def test_text_without_astral_characters_is_unchanged() -> None:
    body = json.dumps({"a": "plain \u00e9 \\ud83d"})
    assert yaml_safe_json(body) == body
