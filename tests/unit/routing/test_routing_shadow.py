"""Shadow settings: pure changes of the sidecar ConfigMap, checked by the sidecar's parser."""

from __future__ import annotations

import json

import pytest

from vigil.core import naming
from vigil.core.desired import Owner, RevisionInfo, desired_configmap
from vigil.core.rollout import Tolerance, Traffic
from vigil.core.spec import parse_spec
from vigil.routing.base import RoutingError, RoutingTarget
from vigil.routing.shadow import (
    read_shadow,
    shadow_block,
    shadow_configmap,
    shadow_for,
    with_shadow,
    without_shadow,
)
from vigil.sidecar.config import settings_from_mapping

TARGET = RoutingTarget("wine", "ml", stable="aaaaaaa", candidate="bbbbbbb")
OWNER = Owner("wine", "ml", "uid-1")


def stable_configmap():
    spec = parse_spec(
        "wine",
        {
            "model": {"name": "wine", "version": "2"},
            "server": {"image": "seldonio/mlserver:1.7.1-sklearn"},
            "replicas": 2,
        },
    )
    return desired_configmap(OWNER, spec, RevisionInfo("aaaaaaa", "id", naming.ROLE_STABLE))


def sidecar_settings(data):
    return settings_from_mapping(json.loads(data["sidecar.json"]))


def test_shadow_block_is_accepted_by_the_sidecar():
    tolerance = Tolerance(absolute=0.001, relative=0.02)
    data = with_shadow(stable_configmap()["data"], shadow_block(TARGET, 100, tolerance=tolerance))
    settings = sidecar_settings(data)
    assert settings.shadow.enabled
    assert settings.shadow.target == "http://wine-bbbbbbb.ml.svc:80"
    assert settings.shadow.target_revision == "bbbbbbb"
    assert settings.shadow.percent == 100
    assert (settings.shadow.tolerance, settings.shadow.relative_tolerance) == (0.001, 0.02)


def test_the_shadow_steps_tolerance_reaches_the_sidecar_and_absent_absolute_stays_unset():
    block = shadow_for(TARGET, Traffic(0, 100, 2, 2, Tolerance(relative=0.1)))
    assert block is not None
    assert block["relativeTolerance"] == 0.1 and "tolerance" not in block
    settings = sidecar_settings(with_shadow(stable_configmap()["data"], block))
    assert (settings.shadow.tolerance, settings.shadow.relative_tolerance) == (None, 0.1)


def test_removing_shadow_turns_copies_off_and_restores_the_original_bytes():
    original = stable_configmap()["data"]
    on = with_shadow(original, shadow_block(TARGET, 25))
    off = without_shadow(on)
    assert not sidecar_settings(off).shadow.enabled
    assert off == original  # same rendering as desired_configmap
    assert read_shadow(off) is None
    assert read_shadow(on) == {
        "target": "http://wine-bbbbbbb.ml.svc:80",
        "targetRevision": "bbbbbbb",
        "percent": 25,
    }


def test_only_the_shadow_block_changes():
    original = json.loads(stable_configmap()["data"]["sidecar.json"])
    changed = json.loads(
        with_shadow(stable_configmap()["data"], shadow_block(TARGET, 50))["sidecar.json"]
    )
    changed.pop("shadow")
    original.pop("shadow")
    assert changed == original


@pytest.mark.parametrize(
    ("traffic", "enabled"),
    [(Traffic(0, 100, 2, 2), True), (Traffic(0, 0, 1, 2), False), (Traffic(20, 0, 1, 2), False)],
)
def test_shadow_follows_traffic(traffic, enabled):
    block = shadow_for(TARGET, traffic)
    assert (block is not None) == enabled
    data = with_shadow(stable_configmap()["data"], block)
    assert sidecar_settings(data).shadow.enabled == enabled


def test_no_candidate_no_shadow():
    assert shadow_for(RoutingTarget("wine", "ml", "aaaaaaa"), Traffic(0, 100, 0, 2)) is None
    with pytest.raises(RoutingError):
        shadow_block(RoutingTarget("wine", "ml", "aaaaaaa"), 100)


@pytest.mark.parametrize("percent", [0, -1, 101])
def test_bad_percent_is_refused(percent):
    with pytest.raises(RoutingError):
        shadow_block(TARGET, percent)


def test_settings_the_sidecar_would_reject_are_refused():
    with pytest.raises(RoutingError, match="reject"):
        with_shadow(stable_configmap()["data"], {"target": "ftp://x", "percent": 10})
    with pytest.raises(RoutingError, match="reject"):
        with_shadow(stable_configmap()["data"], {"unknownKey": 1})


def test_unreadable_data_is_an_error():
    with pytest.raises(RoutingError, match="no key"):
        with_shadow({}, None)
    with pytest.raises(RoutingError, match="not JSON"):
        with_shadow({"sidecar.json": "{"}, None)


def test_shadow_configmap_restamps_the_applied_hash():
    manifest = stable_configmap()
    changed = shadow_configmap(manifest, shadow_block(TARGET, 100))
    key = naming.ANNOTATION_APPLIED_HASH
    assert changed["metadata"]["annotations"][key] != manifest["metadata"]["annotations"][key]
    assert shadow_configmap(changed, None) == manifest


def test_target_address_can_be_overridden():
    block = shadow_for(TARGET, Traffic(0, 50, 2, 2), target_url="http://127.100.0.7:8000")
    assert block is not None
    settings = sidecar_settings(with_shadow(stable_configmap()["data"], block))
    assert settings.shadow.target == "http://127.100.0.7:8000"
    assert settings.shadow.percent == 50
