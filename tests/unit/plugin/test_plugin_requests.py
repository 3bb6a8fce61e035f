"""The manual-request annotation contract and the plugin's kubectl invocation."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from vigil.cli import main
from vigil.core.candidate import Request as ManualRequest
from vigil.plugin.cli import FIELD_MANAGER
from vigil.plugin.requests import (
    ANNOTATION_REQUEST,
    ANNOTATION_REQUEST_ID,
    VERBS,
    Answer,
    answer_to,
    clear_request_patch,
    parse_request,
    read_request,
    request_annotations,
    request_patch,
    rollout_request,
)


@pytest.mark.parametrize("verb", VERBS)
def test_read_request_returns_each_verb(verb):
    assert read_request(request_annotations(verb)) == verb


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"other": "x"}, {ANNOTATION_REQUEST: "explode"}, {ANNOTATION_REQUEST: ""}],
)
def test_no_or_unknown_request_reads_empty(annotations):
    assert read_request(annotations) == ""
    assert rollout_request(annotations) == ""


def test_rollout_request_maps_to_rollout_state():
    for verb in ("promote", "abort", "pause", "resume"):
        assert rollout_request({ANNOTATION_REQUEST: verb}) == verb
    assert rollout_request({ANNOTATION_REQUEST: "retry"}) == ""


def test_request_patch_touches_only_the_two_annotations():
    patch = request_patch("pause", "id-1")
    assert patch == {
        "metadata": {"annotations": {ANNOTATION_REQUEST: "pause", ANNOTATION_REQUEST_ID: "id-1"}}
    }
    assert "spec" not in patch


def test_ids_are_fresh():
    assert (
        request_annotations("pause")[ANNOTATION_REQUEST_ID]
        != (request_annotations("pause")[ANNOTATION_REQUEST_ID])
    )


def test_unknown_verb_cannot_be_requested():
    with pytest.raises(ValueError, match="unknown request"):
        request_annotations("delete")


def test_clear_patch_tests_the_id_before_removing():
    request = parse_request({ANNOTATION_REQUEST: "promote", ANNOTATION_REQUEST_ID: "abc"})
    assert request == ManualRequest("promote", "abc")
    assert clear_request_patch(request) == [
        {"op": "test", "path": "/metadata/annotations/vigil.dev~1request-id", "value": "abc"},
        {"op": "remove", "path": "/metadata/annotations/vigil.dev~1request-id"},
        {"op": "remove", "path": "/metadata/annotations/vigil.dev~1request"},
    ]


def test_clear_patch_without_id_tests_the_verb():
    request = parse_request({ANNOTATION_REQUEST: "abort"})
    assert request is not None
    ops = clear_request_patch(request)
    assert ops[0] == {
        "op": "test",
        "path": "/metadata/annotations/vigil.dev~1request",
        "value": "abort",
    }
    assert ops[-1]["op"] == "remove"


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch):
    """A stand-in kubectl that records its arguments (the real one runs in the e2e test)."""
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"LOG = {str(log)!r}\n"
        "open(LOG, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if 'get' in sys.argv:\n"
        "    obj = {'metadata': {'annotations': {}}}\n"
        "    answer = os.environ.get('FAKE_ANSWER')\n"
        "    if answer:\n"
        "        asked = [json.loads(l) for l in open(LOG)][0]\n"
        "        rid = [a for a in asked if a.startswith('vigil.dev/request-id=')][0]\n"
        "        last = {'id': rid.split('=', 1)[1], 'answer': answer, 'message': 'why'}\n"
        "        obj['status'] = {'lastRequest': last}\n"
        "    print(json.dumps(obj))\n"
        "if 'missing' in sys.argv:\n"
        "    sys.stderr.write('Error from server (NotFound): not found\\n'); sys.exit(1)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("VIGIL_KUBECTL", str(script))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def test_cli_annotates_with_kubectl(fake_kubectl, capsys):
    assert main(["promote", "wine", "-n", "ml", "--context", "prod"]) == 0
    (call,) = fake_kubectl()
    assert call[:6] == [
        "--context=prod",
        "--namespace=ml",
        "annotate",
        "modeldeployments.vigil.dev",
        "wine",
        "--overwrite",
    ]
    assert f"--field-manager={FIELD_MANAGER}" in call
    assert f"{ANNOTATION_REQUEST}=promote" in call
    assert any(a.startswith(f"{ANNOTATION_REQUEST_ID}=") for a in call)
    assert "promote requested" in capsys.readouterr().out


def test_cli_reports_kubectl_errors(fake_kubectl, capsys):
    assert main(["abort", "missing"]) == 1
    assert "NotFound" in capsys.readouterr().err


def test_cli_wait_returns_once_the_request_is_taken(fake_kubectl):
    # The fake's object has no request-id: the operator "took" it at once.
    assert main(["pause", "wine", "--wait", "5"]) == 0
    assert [c[0] for c in fake_kubectl()] == ["annotate", "get"]


def test_cli_wait_prints_the_operators_answer(fake_kubectl, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_ANSWER", "Taken")
    assert main(["pause", "wine", "-n", "ml", "--wait", "5"]) == 0
    assert "the operator took the pause request: why" in capsys.readouterr().out


def test_cli_wait_fails_on_a_refusal_and_says_why(fake_kubectl, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_ANSWER", "Refused")
    assert main(["abort", "wine", "-n", "ml", "--wait", "5"]) == 1
    assert "the operator refused the abort request: why" in capsys.readouterr().err


def test_an_answer_is_read_only_for_its_own_request():
    status = {"lastRequest": {"id": "a", "answer": "Refused", "message": "no"}}
    assert answer_to(status, "a") == Answer(taken=False, message="no")
    assert answer_to(status, "b") is None and answer_to(None, "a") is None


def test_cli_without_kubectl_says_so(monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_KUBECTL", "")
    monkeypatch.setenv("PATH", str(Path(os.devnull).parent / "nonexistent"))
    assert main(["resume", "wine"]) == 1
    assert "kubectl not found" in capsys.readouterr().err


#: Field-manager prefixes whose fields Flux's kustomize-controller (v1.9.6, fluxcd/pkg/ssa
#: cleanup) renames to its own before each apply, so that its apply then removes them.
FLUX_TAKES_OVER = ("kubectl", "before-first-apply", "kustomize-controller")


def test_requests_are_placed_under_a_field_manager_flux_leaves_alone():
    # A request pending while Flux syncs (the operator restarting) must survive the sync.
    assert not FIELD_MANAGER.startswith(FLUX_TAKES_OVER), FIELD_MANAGER
