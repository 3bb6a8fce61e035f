"""Events as manifests: one name per occurrence, so a post repeated after a kill is no duplicate."""

from __future__ import annotations

import datetime
import re
from typing import Any

from vigil.core.events import MAX_MESSAGE_LENGTH, event_manifest, event_name, shorten

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=datetime.UTC)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def body(resource_version: str = "41", name: str = "wine") -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": "uid-1",
            "resourceVersion": resource_version,
        },
    }


def manifest(involved: dict[str, Any], reason: str = "Switched", message: str = "m") -> Any:
    return event_manifest(
        involved, reason, message, warning=False, now=NOW, component="vigil-operator"
    )


def test_the_same_step_decided_again_on_the_same_version_has_the_same_name() -> None:
    # The cycle that runs again after a kill recomputes it: the API server answers 409.
    first = manifest(body(), message="live traffic moved from a to b")
    later = event_manifest(
        body(),
        "Switched",
        "live traffic moved from a to b",
        warning=False,
        now=NOW + datetime.timedelta(seconds=30),
        component="vigil-operator",
    )
    assert first["metadata"]["name"] == later["metadata"]["name"]


def test_a_new_version_of_the_object_or_other_words_make_a_new_event() -> None:
    names = {
        manifest(body("41"))["metadata"]["name"],
        manifest(body("42"))["metadata"]["name"],
        manifest(body("41"), reason="RolledBack")["metadata"]["name"],
        manifest(body("41"), message="other")["metadata"]["name"],
        event_name(body("41"), "Warning", "Switched", "m"),
    }
    assert len(names) == 5


def test_an_outcome_decided_again_with_newer_figures_keeps_its_name() -> None:
    # A kill between the Event and the status: the next cycle rolls back again on newer
    # figures, perhaps on a newer version (CI run ci41: two RolledBack Events); the
    # occurrence (outcome, revision, the attempt's start) names it, not the words.
    def rolled_back(version: str, agreement: str, started: str = "12:00:00") -> Any:
        return event_manifest(
            body(version),
            "RolledBack",
            f"revision 1b3318f rolled back at step 1: agreement {agreement} vs 0.900",
            warning=True,
            now=NOW,
            component="vigil-operator",
            occurrence=f"RolledBack 1b3318f {started}",
        )["metadata"]["name"]

    assert rolled_back("41", "0.256") == rolled_back("41", "0.218") == rolled_back("43", "0.2")
    # A later attempt of the same revision is another occurrence.
    assert rolled_back("41", "0.256") != rolled_back("41", "0.256", started="12:30:00")


def test_the_event_points_at_the_model_deployment_and_shows_in_describe() -> None:
    event = event_manifest(
        body(), "RolledBack", "agreement 0.41 < 0.90", warning=True, now=NOW, component="vigil"
    )
    assert event["metadata"]["namespace"] == "ml"
    assert event["metadata"]["name"].startswith("wine.")
    assert event["involvedObject"] == {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "wine",
        "namespace": "ml",
        "uid": "uid-1",
        "resourceVersion": "41",
    }
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "RolledBack", 1)
    assert event["source"] == {"component": "vigil"}
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-11-26T12:00:00.123456Z"
    assert event["eventTime"] == "2026-11-26T12:00:00.123456Z"


def test_names_are_valid_for_the_longest_object_names() -> None:
    name = event_manifest(body(name="m" * 253), "R", "x", warning=False, now=NOW, component="c")[
        "metadata"
    ]["name"]
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name)


def test_long_messages_keep_their_start_and_end_within_the_limit() -> None:
    message = "start " + "x" * 5000 + " end"
    short = shorten(message)
    assert len(short) == MAX_MESSAGE_LENGTH
    assert short.startswith("start ") and short.endswith(" end") and " ... " in short
    assert shorten("brief") == "brief"
    wide = shorten("é" * 2000)  # two bytes each: the API server counts bytes
    assert len(wide.encode()) <= MAX_MESSAGE_LENGTH and wide.startswith("é") and wide.endswith("é")
    assert manifest(body(), message=message)["message"] == short
