"""The manual-request annotation contract and the plugin's kubectl invocation."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from vigil.cli import main
from vigil.core.candidate import Request as ManualRequest
from vigil.plugin import cli as plugin_cli
from vigil.plugin import status_cli
from vigil.plugin.cli import EXIT_STILL_PENDING, FIELD_MANAGER, PluginError, annotate_command
from vigil.plugin.requests import (
    ANNOTATION_REQUEST,
    ANNOTATION_REQUEST_ID,
    ANNOTATION_REQUEST_REVISION,
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


def test_request_patch_touches_only_the_request_annotations():
    patch = request_patch("pause", "id-1")
    assert patch == {
        "metadata": {
            "annotations": {
                ANNOTATION_REQUEST: "pause",
                ANNOTATION_REQUEST_ID: "id-1",
                ANNOTATION_REQUEST_REVISION: None,  # an earlier request's revision removed
            }
        }
    }
    assert "spec" not in patch
    placed = request_patch("pause", "id-1", "cafe123")["metadata"]["annotations"]
    assert placed[ANNOTATION_REQUEST_REVISION] == "cafe123"


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
        "pending = os.environ.get('FAKE_PENDING')\n"
        "leftover = os.environ.get('FAKE_LEFTOVER')\n"
        "if 'annotate' in sys.argv and (pending or leftover) and '--overwrite' not in sys.argv:\n"
        "    sys.stderr.write('error: --overwrite is false but found the following declared '\n"
        "                     \"annotation(s): 'vigil.dev/request' \"\n"
        '                     f"already has a value ({pending})\\n")\n'
        "    sys.exit(1)\n"
        "if 'get' in sys.argv:\n"
        "    obj = {'metadata': {'annotations': {}}}\n"
        "    if os.environ.get('FAKE_VERSION'):\n"
        "        obj['metadata']['resourceVersion'] = os.environ['FAKE_VERSION']\n"
        "    if pending:\n"
        "        obj['metadata']['resourceVersion'] = '7'\n"
        "        obj['metadata']['annotations'] = {\n"
        "            'vigil.dev/request': pending, 'vigil.dev/request-id': 'id-of-theirs'}\n"
        "    if leftover:\n"
        "        obj['metadata']['resourceVersion'] = '8'\n"
        "        obj['metadata']['annotations'] = {'vigil.dev/request-revision': leftover}\n"
        "    if os.environ.get('FAKE_PENDING_ANSWERED'):\n"
        "        obj['status'] = {'lastRequest': {'id': 'id-of-theirs', 'answer': 'Taken'}}\n"
        "    answer = os.environ.get('FAKE_ANSWER')\n"
        "    calls = [json.loads(line) for line in open(LOG)]\n"
        "    placed = [c for c in calls if 'annotate' in c]\n"
        "    # The operator reads the request at this read after it was placed (1: the first);\n"
        "    # before, it is pending.\n"
        "    at_read = int(os.environ.get('FAKE_ANSWER_AT_READ', '1'))\n"
        "    reads = sum('get' in c for c in calls[calls.index(placed[0]) :]) if placed else 0\n"
        "    if placed:\n"
        "        rid = [a for a in placed[0] if a.startswith('vigil.dev/request-id=')][0]\n"
        "    if placed and reads < at_read:\n"
        "        obj['metadata']['annotations'] = {'vigil.dev/request-id': rid.split('=', 1)[1]}\n"
        "    elif answer and placed:\n"
        "        last = {'id': rid.split('=', 1)[1], 'answer': answer, 'message': 'why'}\n"
        "        obj['status'] = {'lastRequest': last}\n"
        "        if os.environ.get('FAKE_NOT_CLEARED'):\n"
        "            obj['metadata']['annotations'] = {'vigil.dev/request-id': last['id']}\n"
        "    if os.environ.get('FAKE_STABLE'):\n"
        "        obj.setdefault('status', {})['stable'] = {'revision': 'beef456'}\n"
        "    if os.environ.get('FAKE_CANDIDATE'):\n"
        "        obj.setdefault('status', {})['candidate'] = {'revision': 'cafe123'}\n"
        "    if os.environ.get('FAKE_OUTCOME'):\n"
        "        obj['status']['candidate']['outcome'] = os.environ['FAKE_OUTCOME']\n"
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
    read, call = fake_kubectl()
    assert read[2] == "get"
    assert call[:6] == [
        "--context=prod",
        "--namespace=ml",
        "annotate",
        "modeldeployments.vigil.dev",
        "wine",
        f"--field-manager={FIELD_MANAGER}",
    ]
    assert "--overwrite" not in call  # a pending request is refused, not replaced
    assert f"--field-manager={FIELD_MANAGER}" in call
    assert f"{ANNOTATION_REQUEST}=promote" in call
    assert any(a.startswith(f"{ANNOTATION_REQUEST_ID}=") for a in call)
    assert "promote requested" in capsys.readouterr().out


def test_a_request_is_placed_only_on_the_object_as_read(fake_kubectl, monkeypatch):
    # kubectl's "already has a value" check is its own read: two people at once both passed
    # it, and the second patch overwrote the first request, both told "requested".
    monkeypatch.setenv("FAKE_VERSION", "5")
    assert main(["promote", "wine", "-n", "ml"]) == 0
    _, call = fake_kubectl()
    assert "--resource-version=5" in call and "--overwrite" not in call


def test_cli_reports_kubectl_errors(fake_kubectl, capsys):
    assert main(["abort", "missing"]) == 1
    assert "NotFound" in capsys.readouterr().err


def test_cli_wait_fails_when_the_request_was_removed_without_an_answer(fake_kubectl, capsys):
    # The fake's object has no request-id and no answer: a person withdrew it.
    assert main(["pause", "wine", "--wait", "5"]) == 1
    assert [c[0] for c in fake_kubectl()] == ["get", "annotate", "get"]
    assert "no answer to the pause request (removed by a person" in capsys.readouterr().err


def test_a_pending_request_is_not_replaced_and_the_refusal_says_how_to_withdraw_it(
    fake_kubectl, monkeypatch, capsys
):
    monkeypatch.setenv("FAKE_PENDING", "abort")
    assert main(["promote", "wine", "-n", "ml"]) == 1
    err = capsys.readouterr().err
    assert "a request is still pending (abort, id id-of-theirs)" in err
    assert "vigil.dev/request- vigil.dev/request-id-" in err
    assert not any("--overwrite" in call for call in fake_kubectl())


def test_a_request_already_answered_is_replaced_if_the_object_is_as_read(fake_kubectl, monkeypatch):
    # Answered, not yet cleared (the operator clears it a moment after its status write).
    monkeypatch.setenv("FAKE_PENDING", "resume")
    monkeypatch.setenv("FAKE_PENDING_ANSWERED", "1")
    assert main(["promote", "wine", "-n", "ml"]) == 0
    _, first, read, replaced = fake_kubectl()
    assert (first[1], read[1], replaced[1]) == ("annotate", "get", "annotate")
    assert "--overwrite" in replaced and "--resource-version=7" in replaced


def test_cli_wait_prints_the_operators_answer(fake_kubectl, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_ANSWER", "Taken")
    assert main(["pause", "wine", "-n", "ml", "--wait", "5"]) == 0
    assert "the operator took the pause request: why" in capsys.readouterr().out


def test_cli_wait_reports_an_answer_written_before_the_request_is_cleared(
    fake_kubectl, monkeypatch, capsys
):
    # The operator answers in status, then clears the annotation (a later patch, which
    # can fail and wait for the next cycle): the answer is what --wait waits for.
    monkeypatch.setenv("FAKE_ANSWER", "Taken")
    monkeypatch.setenv("FAKE_NOT_CLEARED", "1")
    assert main(["pause", "wine", "-n", "ml", "--wait", "2"]) == 0
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


def test_status_says_when_kubectl_cannot_run(monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_KUBECTL", "/nonexistent/kubectl")
    assert main(["status", "wine"]) == 1
    assert "vigil status: cannot run kubectl:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["status", "wine", "--watch", "--interval", "0"], "at least 0.5 seconds"),
        (["status", "wine", "--watch", "--interval", "inf"], "at least 0.5 seconds"),
        (["pause", "wine", "--wait", "-1"], "at least 0 seconds, got -1"),
        (["pause", "wine", "--wait", "nan"], "at least 0 seconds, got nan"),
        (["abort", "wine", "--wait", "soon"], "not a number of seconds: 'soon'"),
        (["report", "wine", "--since", "1d"], "not a duration: '1d' (a number and a unit"),
        (["report", "wine", "--step", "90"], "not a duration: '90'"),
        (["report", "wine", "--window", "0s"], "must be more than 0"),
    ],
)
def test_bad_durations_are_refused_before_anything_is_read(fake_kubectl, capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert fake_kubectl() == []


def test_a_rollouts_request_names_the_candidate_the_person_saw(fake_kubectl, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_CANDIDATE", "1")
    assert main(["abort", "wine"]) == 0
    read, placed = fake_kubectl()
    assert read[0] == "get" and f"{ANNOTATION_REQUEST_REVISION}=cafe123" in placed
    assert "abort requested for revision cafe123" in capsys.readouterr().out
    assert main(["retry", "wine"]) == 0  # retry names no rollout: nothing read first
    assert fake_kubectl()[-1][0] == "annotate"
    assert not any(a.startswith(f"{ANNOTATION_REQUEST_REVISION}=") for a in fake_kubectl()[-1])


@pytest.mark.parametrize("candidate", [False, True])
def test_a_request_with_no_rollout_in_view_names_the_serving_revision(
    fake_kubectl, monkeypatch, capsys, candidate
):
    # Named by nothing, a promote typed as nothing rolled out was taken by the next rollout
    # (the operator down, Git synced): promoted unjudged.
    monkeypatch.setenv("FAKE_STABLE", "1")
    if candidate:
        monkeypatch.setenv("FAKE_CANDIDATE", "1")
    assert main(["promote", "wine"]) == 0
    _, placed = fake_kubectl()
    named = "cafe123" if candidate else "beef456"
    assert f"{ANNOTATION_REQUEST_REVISION}={named}" in placed
    assert f"promote requested for revision {named}" in capsys.readouterr().out


def test_a_request_names_its_revision_and_is_cleared_with_it():
    placed = request_annotations("pause", "id-1", "cafe123")
    request = parse_request(placed)
    assert request is not None and request.revision == "cafe123"
    assert clear_request_patch(request)[-1] == {
        "op": "remove",
        "path": "/metadata/annotations/vigil.dev~1request-revision",
    }


def test_leftovers_of_a_cleared_request_are_replaced_not_reported_pending(
    fake_kubectl, monkeypatch
):
    # Only vigil.dev/request-revision left (removed by hand, or by an older operator).
    monkeypatch.setenv("FAKE_LEFTOVER", "cafe123")
    assert main(["retry", "wine", "-n", "ml"]) == 0
    first, read, replaced = fake_kubectl()
    assert (first[1], read[1], replaced[1]) == ("annotate", "get", "annotate")
    assert "--overwrite" in replaced and "--resource-version=8" in replaced


def _annotated(before: dict[str, str], command: list[str]) -> dict[str, str]:
    """The annotations after ``kubectl annotate`` ran ``command`` (KEY=VALUE sets, KEY-
    removes) on an object that had ``before``."""
    after = dict(before)
    for word in command[command.index("annotate") + 3 :]:
        if word.startswith("--"):
            continue
        if "=" in word:
            key, value = word.split("=", 1)
            after[key] = value
        elif word.endswith("-"):
            after.pop(word[:-1], None)
    return after


@pytest.mark.parametrize("verb", ["pause", "resume", "retry"])
def test_a_request_without_revision_replaces_an_answered_ones_revision(fake_kubectl, verb):
    # An answered promote for revision aaaaaaa, not yet cleared; then a pause, resume or
    # retry with no revision: the operator must not read it as for revision aaaaaaa.
    answered = {
        ANNOTATION_REQUEST: "promote",
        ANNOTATION_REQUEST_ID: "id-1",
        ANNOTATION_REQUEST_REVISION: "aaaaaaa",
    }
    args = argparse.Namespace(name="wine", namespace="ml", context=None, kubeconfig=None)
    command = annotate_command(args, request_annotations(verb, "id-2"), replacing="42")
    assert f"{ANNOTATION_REQUEST_REVISION}-" in command
    request = parse_request(_annotated(answered, command))
    assert request == ManualRequest(verb, "id-2", None)
    # With a revision, it is set (kubectl refuses to set and remove one key at once).
    command = annotate_command(args, request_annotations(verb, "id-3", "bbbbbbb"), "42")
    assert not any(word.endswith("-") for word in command if not word.startswith("-"))
    assert parse_request(_annotated(answered, command)) == ManualRequest(verb, "id-3", "bbbbbbb")


def test_replacing_an_answered_request_removes_its_revision(fake_kubectl, monkeypatch):
    monkeypatch.setenv("FAKE_PENDING", "promote")
    monkeypatch.setenv("FAKE_PENDING_ANSWERED", "1")
    assert main(["pause", "wine", "-n", "ml"]) == 0
    first, _, replaced = fake_kubectl()[1:]
    assert f"{ANNOTATION_REQUEST_REVISION}-" in first  # leftovers of a cleared one too
    assert "--overwrite" in replaced and f"{ANNOTATION_REQUEST_REVISION}-" in replaced


@pytest.mark.parametrize("outcome", ["RolledBack", "Failed"])
@pytest.mark.parametrize("verb", ["promote", "abort", "pause", "resume"])
def test_a_request_at_an_ended_attempt_names_its_revision(
    fake_kubectl, monkeypatch, capsys, verb, outcome
):
    # A restarted or new rollout by the time the operator reads it is not the one seen.
    monkeypatch.setenv("FAKE_CANDIDATE", "1")
    monkeypatch.setenv("FAKE_OUTCOME", outcome)
    assert main([verb, "wine"]) == 0
    _, placed = fake_kubectl()
    assert f"{ANNOTATION_REQUEST_REVISION}=cafe123" in placed
    assert f"{verb} requested for revision cafe123" in capsys.readouterr().out


class FakeTime:
    """A clock that only sleeps move; Ctrl-C after ``interrupt_after`` sleeps, if given."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.interrupt_after = interrupt_after

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.interrupt_after is not None and len(self.slept) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.slept.append(seconds)
        self.now += seconds

    def strftime(self, pattern: str) -> str:
        return "12:00:00"


def test_cli_wait_reads_once_more_at_the_deadline(fake_kubectl, monkeypatch, capsys):
    # The answer arrives in the last second of --wait 1: the read at the deadline sees it.
    clock = FakeTime()
    monkeypatch.setattr(plugin_cli, "time", clock)
    monkeypatch.setenv("FAKE_ANSWER", "Taken")
    monkeypatch.setenv("FAKE_ANSWER_AT_READ", "2")
    assert main(["pause", "wine", "-n", "ml", "--wait", "1"]) == 0
    assert "the operator took the pause request: why" in capsys.readouterr().out
    assert clock.slept == [1.0]


@pytest.mark.slow
def test_cli_wait_sleeps_no_further_than_the_deadline(fake_kubectl, monkeypatch, capsys):
    clock = FakeTime()
    monkeypatch.setattr(plugin_cli, "time", clock)
    monkeypatch.setenv("FAKE_ANSWER_AT_READ", "9")  # pending all along
    # Not a refusal (1): the request stays placed, and the operator may still take it.
    assert main(["pause", "wine", "-n", "ml", "--wait", "2.5"]) == EXIT_STILL_PENDING
    assert clock.slept == [1.0, 1.0, 0.5]
    assert [call[1] for call in fake_kubectl()] == ["get", "annotate", "get", "get", "get", "get"]
    assert "the pause request is still pending after 2.5s" in capsys.readouterr().err


def test_status_watch_shows_a_kubectl_error_and_keeps_refreshing(monkeypatch, capsys):
    screens = iter(["screen 1", PluginError("Unable to connect to the server"), "screen 3"])

    def snapshot(args: argparse.Namespace, colour: bool) -> str:
        found = next(screens)
        if isinstance(found, Exception):
            raise found
        return found

    clock = FakeTime(interrupt_after=2)
    monkeypatch.setattr(status_cli, "snapshot", snapshot)
    monkeypatch.setattr(status_cli, "time", clock)
    assert main(["status", "wine", "--watch"]) == 130  # Ctrl-C
    drawn = capsys.readouterr().out.split("\033[H\033[2J")[1:]
    assert drawn == [
        "screen 1\n",
        "vigil status: Unable to connect to the server; retrying every 2s (the screen\n"
        "below was read at 12:00:00)\n\nscreen 1\n",
        "screen 3\n",
    ]


class Operator:
    """An object a scripted operator changes at each read after the request is placed:
    ``script[n]`` (object -> None, or an exception to raise) runs at read ``n`` (1: the
    first after the annotate); kubectl annotate places the request's annotations."""

    def __init__(self, script: dict) -> None:
        self.obj: dict = {
            "metadata": {"name": "wine", "annotations": {}, "resourceVersion": "1"},
            "status": {
                "candidate": {"revision": "cafe123"},
                "lastRequest": {"id": "earlier", "verb": "pause", "answer": "Taken"},
            },
        }
        self.script = script
        self.reads = -1  # the read before the annotate (the candidate's revision) is 0

    def run(self, command: list[str]) -> Any:
        placed = [a.split("=", 1) for a in command if a.startswith("vigil.dev/") and "=" in a]
        self.obj["metadata"]["annotations"].update(dict(placed))
        return argparse.Namespace(returncode=0, stdout="", stderr="")

    def read(self, args: argparse.Namespace) -> dict:
        self.reads += 1
        step = self.script.get(self.reads)
        if isinstance(step, Exception):
            raise step
        if step is not None:
            step(self.obj)
        return json.loads(json.dumps(self.obj))

    def ours(self) -> str:
        return self.obj["metadata"]["annotations"][ANNOTATION_REQUEST_ID]


def _operated(monkeypatch: pytest.MonkeyPatch, script: dict) -> tuple[Operator, FakeTime]:
    operator, clock = Operator(script), FakeTime()
    monkeypatch.setattr(plugin_cli, "run_kubectl", operator.run)
    monkeypatch.setattr(plugin_cli, "_read", operator.read)
    monkeypatch.setattr(plugin_cli, "time", clock)
    monkeypatch.setenv("VIGIL_KUBECTL", "kubectl")
    return operator, clock


def test_wait_says_the_outcome_is_unknown_when_a_newer_answer_replaced_ours(monkeypatch, capsys):
    def answer_ours_then_another(obj: dict) -> None:
        # Ours taken and cleared; another person's abort placed and answered since.
        obj["status"]["lastRequest"] = {"id": "theirs", "verb": "abort", "answer": "Taken"}
        obj["metadata"]["annotations"].clear()

    _operated(monkeypatch, {2: answer_ours_then_another})
    assert main(["promote", "wine", "--wait", "5"]) == plugin_cli.EXIT_OUTCOME_UNKNOWN == 3
    err = capsys.readouterr().err
    assert "promote request was most likely answered, but its outcome is unknown" in err
    assert "(id theirs)" in err and "RequestRefused" in err and "no answer" not in err


def test_wait_still_says_no_answer_when_the_last_answer_is_one_it_saw_before(monkeypatch, capsys):
    # Removed by a person: status still answers the request before ours.
    _operated(monkeypatch, {2: lambda obj: obj["metadata"]["annotations"].clear()})
    assert main(["promote", "wine", "--wait", "5"]) == 1
    assert "no answer to the promote request (removed by a person" in capsys.readouterr().err


def test_a_retry_removed_while_its_first_wait_read_failed_is_no_answer(monkeypatch, capsys):
    # retry places no revision, yet its wait reads status first: the answer already there
    # is not taken for a newer request's.
    operator, _clock = _operated(monkeypatch, {})
    after_placing: list[str] = []

    def read(args: argparse.Namespace) -> dict:
        if ANNOTATION_REQUEST_ID in operator.obj["metadata"]["annotations"]:
            after_placing.append("read")
            if len(after_placing) == 1:  # the first read after the annotate fails
                raise PluginError("Unable to connect to the server")
            operator.obj["metadata"]["annotations"].clear()  # then: removed by a person
        return json.loads(json.dumps(operator.obj))

    monkeypatch.setattr(plugin_cli, "_read", read)
    assert main(["retry", "wine", "--wait", "5"]) == 1
    assert "no answer to the retry request (removed by a person" in capsys.readouterr().err


def test_wait_reads_again_after_a_failed_read_and_says_so_once(monkeypatch, capsys):
    def answer(obj: dict) -> None:
        obj["status"]["lastRequest"] = {"id": operator.ours(), "answer": "Taken", "message": "ok"}

    blip = PluginError("Unable to connect to the server")
    operator, clock = _operated(monkeypatch, {1: blip, 2: blip, 3: answer})
    assert main(["pause", "wine", "--wait", "5"]) == 0
    captured = capsys.readouterr()
    assert "the operator took the pause request: ok" in captured.out
    assert captured.err.count("cannot read it (Unable to connect to the server)") == 1
    assert clock.slept == [1.0, 1.0]


def test_wait_names_the_failed_read_when_none_succeeds_before_the_deadline(monkeypatch, capsys):
    _operated(monkeypatch, {n: PluginError("connection refused") for n in range(1, 9)})
    assert main(["pause", "wine", "--wait", "2"]) == EXIT_STILL_PENDING
    err = capsys.readouterr().err
    assert "still pending after 2s (the last read failed: connection refused)" in err


def _event(uid: str | None, reason: str) -> dict[str, Any]:
    involved = {"kind": "ModelDeployment", "name": "wine", "uid": uid}
    return {"involvedObject": {k: v for k, v in involved.items() if v}, "reason": reason}


#: Events about two objects named wine: one deleted (uid old) and the one there now.
EVENTS_OF_BOTH = [_event("old", "RolledBack"), _event("new", "RolloutStarted")]


def _api_server(monkeypatch: pytest.MonkeyPatch, md: dict[str, Any]) -> list[tuple[str, ...]]:
    """kubectl as the API server answers: the object, and the Events its field selector
    picks (``involvedObject.FIELD=VALUE``, all of them)."""
    calls: list[tuple[str, ...]] = []

    def kubectl_output(args: argparse.Namespace, *command: str) -> str:
        calls.append(command)
        if command[1] != "events":
            return json.dumps(md)
        selector = next(c for c in command if c.startswith("--field-selector="))
        wanted = dict(pair.split("=", 1) for pair in selector.split("=", 1)[1].split(","))
        picked = [
            event
            for event in EVENTS_OF_BOTH
            if all(
                event["involvedObject"].get(key.split(".")[1]) == value
                for key, value in wanted.items()
            )
        ]
        return json.dumps({"items": picked})

    monkeypatch.setattr(status_cli, "kubectl_output", kubectl_output)
    return calls


def test_status_reads_only_the_events_of_the_object_there_now_not_a_deleted_namesake(
    monkeypatch,
):
    # Deleted and created again under the same name: the old one's rollback is not its own.
    _api_server(monkeypatch, {"metadata": {"name": "wine", "uid": "new"}})
    args = argparse.Namespace(name="wine", namespace="ml", context=None, kubeconfig=None)
    md, events, unread = status_cli.read_model_and_events(args)
    assert (md["metadata"]["uid"], unread) == ("new", "")
    assert [event["reason"] for event in events] == ["RolloutStarted"]


def test_status_reads_the_events_by_name_for_an_object_without_uid(monkeypatch):
    calls = _api_server(monkeypatch, {"metadata": {"name": "wine"}})
    args = argparse.Namespace(name="wine", namespace="ml", context=None, kubeconfig=None)
    _, events, _ = status_cli.read_model_and_events(args)
    assert len(events) == 2
    by_name = "--field-selector=involvedObject.kind=ModelDeployment,involvedObject.name=wine"
    assert by_name in calls[-1]


FORBIDDEN = (
    'Error from server (Forbidden): events is forbidden: User "ana" cannot list resource '
    '"events" in API group "" in the namespace "ml"'
)


def test_status_without_the_right_to_list_events_shows_the_rest_and_says_why(monkeypatch, capsys):
    def kubectl_output(args: argparse.Namespace, *command: str) -> str:
        if command[1] == "events":
            raise PluginError(FORBIDDEN)
        return json.dumps({"metadata": {"name": "wine", "uid": "u"}, "spec": {}})

    monkeypatch.setattr(status_cli, "kubectl_output", kubectl_output)
    assert main(["status", "wine", "-n", "ml", "--no-color"]) == 0
    screen = " ".join(capsys.readouterr().out.split())
    assert screen.startswith("wine")
    assert f"Events not read: {FORBIDDEN}" in screen


#: What anyone allowed to annotate the object or write its status could send: clear the
#: screen (ESC c), set the clipboard (OSC 52), a C1 CSI (0x9b) and a bell.
HOSTILE = "\x1bc\x1b]52;c;ZWNobw==\x07\x9b2J"
HOSTILE_SHOWN = r"\x1bc\x1b]52;c;ZWNobw==\x07\x9b2J"
CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def test_a_pending_requests_annotations_are_shown_not_sent_to_the_terminal(
    fake_kubectl, monkeypatch, capsys
):
    monkeypatch.setenv("FAKE_PENDING", f"abort{HOSTILE}")
    assert main(["promote", "wine", "-n", "ml"]) == 1
    err = capsys.readouterr().err
    assert not CONTROLS.search(err), repr(err)
    assert f"a request is still pending (abort{HOSTILE_SHOWN}, id id-of-theirs)" in err


def test_the_operators_answer_is_shown_not_sent_to_the_terminal(monkeypatch, capsys):
    def answer(obj: dict) -> None:
        last = {"id": operator.ours(), "answer": "Refused", "message": f"no{HOSTILE}"}
        obj["status"]["lastRequest"] = last

    operator, _clock = _operated(monkeypatch, {1: answer})
    assert main(["pause", "wine", "--wait", "5"]) == 1
    err = capsys.readouterr().err
    assert not CONTROLS.search(err), repr(err)
    assert f"the operator refused the pause request: no{HOSTILE_SHOWN}\n" in err


def test_kubectls_error_is_shown_not_sent_to_the_terminal(monkeypatch):
    failed = argparse.Namespace(returncode=1, stdout="", stderr=f"Error from server: {HOSTILE}\n")
    monkeypatch.setattr(plugin_cli, "run_kubectl", lambda command: failed)
    monkeypatch.setenv("VIGIL_KUBECTL", "kubectl")
    args = argparse.Namespace(name="wine", namespace=None, context=None, kubeconfig=None)
    with pytest.raises(PluginError) as raised:
        plugin_cli.kubectl_output(args, "get", "events")
    assert str(raised.value) == f"Error from server: {HOSTILE_SHOWN}"


def test_a_mistyped_command_lists_the_requests_as_words(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse lists choices by their repr: <RequestVerb.PROMOTE: 'promote'>.
    from vigil.cli import main

    with pytest.raises(SystemExit):
        main(["promot", "wine"])
    err = capsys.readouterr().err
    assert "'promote', 'abort'" in err and "RequestVerb" not in err
