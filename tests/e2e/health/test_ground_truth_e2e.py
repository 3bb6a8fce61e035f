"""Labels for 5 000 predictions of 3 replicas are counted exactly, one pod deleted midway.

Issue 17's first acceptance item, on the real node: the wine model served
by MLServer behind the real sidecar in 3 pods (models on the test's
volume), the real operator (direct metrics source). Predictions and labels
both go through the Service's ClusterIP (kube-proxy picks a pod, ports 8000
and 8001), half under ids of ours (``X-Request-Id``), half under the ids the
sidecars make. Labels lag their predictions by two rounds, so a label often
reaches a pod that does not hold its prediction (the sidecars pass it to
the one that does). On top of one label per prediction: 10 % unknown ids
(never predicted) and 5 % duplicates (a second label for a prediction
labelled before, some with another truth). One truth in five is another
class than the row's, so accuracy is far from 1.

Midway one pod is deleted (graceful: SIGTERM, drain, its predictions handed
to its peers, docs/design/ground-truth.md's failure table) while predictions
and labels keep flowing: no label may be lost, and nothing it had counted
may go missing from the figures. ``status.health.performance``, the
operator's gauges (``vigil_modeldeployment_labels``,
``vigil_modeldeployment_realized_accuracy``) and the answers to the label
pipeline must then show exactly the joined labels, the unknown and the
duplicates (plus any ``unreachable`` an answer reported, each resent), and
the accuracy computed here from the answers and the truths sent.

Figures (counts, accuracy, seconds) are appended to
``.vigil/e2e-logs/ground-truth-figures.jsonl``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kit.figures import Figures
from kit.incluster import kill_container
from kit.kube import Kube, pod_ip, ready, restart_count
from kit.metrics import total
from kit.modeldeployment import ModelStore, serve
from kit.operator import OperatorProcess
from kit.status import read_status, status
from kit.traffic import infer_body, pod_metrics, sidecar_started_at, sidecar_url
from kit.waits import wait_for

from vigil.core.desired import FEEDBACK_PORT, SERVER_CONTAINER, SIDECAR_CONTAINER
from vigil.core.metric_names import FEEDBACK_LABELS
from vigil.sidecar.feedback import FEEDBACK_PATH

REPLICAS = 3
#: Seconds between health cycles: this folder's conftest runs the operator with it.
HEALTH_INTERVAL = 3
PREDICTIONS = 5_000
ROUNDS = 20
#: Rounds between a prediction and its label: labels for the victim's last predictions
#: arrive after it is gone.
LAG = 2
#: The round after whose predictions one pod is deleted.
KILL_AFTER = ROUNDS // 2
UNKNOWN = PREDICTIONS // 10
DUPLICATES = PREDICTIONS // 20
#: Share of truths given another class than the row's.
WRONG_TRUTH = 0.2
#: Labels per feedback request: several requests per round, each to a pod kube-proxy picks.
LABELS_PER_REQUEST = 100
#: Requests at once: a brisk rate on two cores without starving the operator.
CLIENTS = 6
#: Everything counted within this: far shorter than the labels' window (1 h).
PERFORMANCE = {"minLabels": 50, "window": "1h"}

record = Figures("ground-truth").record


@dataclass
class Prediction:
    request_id: str
    predicted: int
    truth: int


@dataclass
class Pipeline:
    """The label pipeline: what it sent, what the answers said."""

    url: str
    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    #: Requests refused as a whole (503 leaving, 429), then resent.
    refused: Counter[int] = field(default_factory=Counter)
    resent_ids: int = 0

    def post(self, labels: list[dict[str, Any]]) -> None:
        """Post ``labels`` until every one got an outcome; resend what the answer asks to."""
        pending = labels
        for _ in range(20):
            if not pending:
                return
            answer = self._post_once(pending)
            if answer is None:
                continue  # refused as a whole: nothing was counted, resend all
            for key, value in answer.items():
                if isinstance(value, int) and key != "received":
                    self.answered[key] += value
            retry = set(answer.get("retry") or ())
            assert not answer.get("errors"), answer
            pending = [label for label in pending if label["id"] in retry]
            self.resent_ids += len(pending)
            if pending:
                # Unreachable: most often a pod handing its predictions over (it says
                # Retry-After 1); resent at once they would find it still on the way.
                time.sleep(1)
        raise AssertionError(f"{len(pending)} labels never got an outcome")

    def _post_once(self, labels: list[dict[str, Any]]) -> dict[str, Any] | None:
        body = json.dumps({"labels": labels}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            error.read()
            # 503 (the pod is handing over) and 429 joined nothing: the howto says resend.
            assert error.code in (429, 503), f"feedback answered HTTP {error.code}"
            self.refused[error.code] += 1
            time.sleep(float(error.headers.get("Retry-After") or 1))
            return None
        except urllib.error.URLError as error:
            # Refused: nothing listened, nothing was counted (a pod gone a moment ago).
            if not isinstance(error.reason, ConnectionRefusedError):
                raise
            self.refused[0] += 1
            time.sleep(0.2)
            return None
        # Any other failure (a reset, a timeout) leaves it unknown what was counted: the
        # exact figures below would then be wrong for a reason of the test's own.


def predict(url: str, row: list[float], request_id: str | None) -> tuple[str, int, str]:
    """One prediction: (its id, the predicted class, the serving revision)."""
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    request = urllib.request.Request(url, data=infer_body([row]), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
        answered_id = response.headers["X-Request-Id"]
        revision = response.headers["X-Vigil-Revision"]
    assert request_id is None or answered_id == request_id, (request_id, answered_id)
    return answered_id, int(body["outputs"][0]["data"][0]), revision


def predict_until_answered(
    url: str, row: list[float], request_id: str | None
) -> tuple[str, int, str]:
    """A prediction, tried again (under a fresh id of ours) if the pod it reached was
    leaving: a failed request may have stored nothing, or a prediction no label names."""
    for attempt in range(10):
        try:
            rid = f"{request_id}-{attempt}" if request_id else None
            return predict(url, row, rid)
        except (urllib.error.HTTPError, urllib.error.URLError, ConnectionError) as error:
            last = error
            time.sleep(0.2)
    raise AssertionError(f"no answer for a prediction: {last}")


@dataclass
class StatusCounts:
    """``status.health.performance`` as last read, against the label counts expected there
    (by outcome, ``joined`` included)."""

    kube: Kube
    expected: dict[str, int]
    last: dict[str, Any] = field(default_factory=dict)

    def look(self) -> dict[str, Any] | None:
        """The figures when they count what is expected (None otherwise)."""
        health = read_status(self.kube).get("health") or {}
        self.last = health.get("performance") or self.last
        not_joined = {k: v for k, v in self.expected.items() if k != "joined"}
        seen = (self.last.get("labels"), self.last.get("notJoined"))
        return self.last if seen == (self.expected["joined"], not_joined) else None

    def wait(self, said: Callable[[], str] | None = None) -> dict[str, Any]:
        """The figures once they count what is expected (``said``: more for a failure)."""
        return wait_for(
            self.look,
            timeout=60,
            what=lambda: (
                f"status.health.performance to count {self.expected} (seen: {self.last})"
                + (said() if said else "")
            ),
        )


def label_gauges(operator: OperatorProcess, revision: str) -> dict[str, int]:
    """The operator's ``vigil_modeldeployment_labels`` for ``revision``, by outcome (non-zero)."""
    return {
        s.labels["outcome"]: int(s.value)
        for s in operator.samples("vigil_modeldeployment_labels", revision=revision)
        if s.value
    }


def sidecar_sums(kube: Kube, pods: list[dict[str, Any]], revision: str) -> Counter[str]:
    """``vigil_feedback_labels_total`` by outcome for ``revision``, summed over ``pods``."""
    sums: Counter[str] = Counter()
    for pod in pods:
        text = pod_metrics(pod["status"]["podIP"])
        assert text, f"no metrics from pod {pod['metadata']['name']}"
        for outcome in ("joined", "duplicate", "unknown", "lost", "unreachable", "expired"):
            sums[outcome] += int(
                total(text, f"{FEEDBACK_LABELS}_total", outcome=outcome, revision=revision)
            )
    return sums


def test_labels_for_5000_predictions_are_counted_exactly_with_a_pod_deleted_midway(
    kube: Kube, operator: OperatorProcess, store: ModelStore
) -> None:
    started = time.monotonic()
    model = store.train("wine")
    document = store.manifest(model, replicas=REPLICAS)
    document["spec"]["monitoring"]["performance"] = PERFORMANCE
    serve(kube, model, document)
    revision = str(status(kube)["stable"]["revision"])
    service = kube.get("service", "wine")
    assert service is not None
    address = service["spec"]["clusterIP"]
    live_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    infer_url = f"http://{address}:{live_port}/v2/models/{model.name}/infer"
    pipeline = Pipeline(f"http://{address}:{FEEDBACK_PORT}{FEEDBACK_PATH}")
    pods = kube.revision_pods(revision)
    assert len(pods) == REPLICAS, [p["metadata"]["name"] for p in pods]
    victim = pods[0]["metadata"]["name"]

    rng = np.random.default_rng(17)
    per_round = PREDICTIONS // ROUNDS
    rounds: list[list[Prediction]] = []
    labelled: list[Prediction] = []
    served_by: Counter[str] = Counter()
    unknown_left, duplicates_left = UNKNOWN, DUPLICATES
    killed_at = 0.0

    def label_round(index: int, rounds_left: int) -> None:
        """The labels of round ``index``'s predictions, its share of unknown ids and of
        duplicates (of labels sent before), shuffled, in several requests."""
        nonlocal unknown_left, duplicates_left
        batch = [{"id": p.request_id, "truth": p.truth} for p in rounds[index]]
        unknown = unknown_left // rounds_left
        batch += [{"id": f"never-predicted-{index}-{k}", "truth": 1} for k in range(unknown)]
        unknown_left -= unknown
        duplicates = min(duplicates_left // rounds_left, len(labelled))
        for pick in rng.choice(len(labelled), duplicates, replace=False):
            again = labelled[int(pick)]
            # Half of them with another truth: a repeated label changes nothing either way.
            truth = again.truth if pick % 2 else (again.truth + 1) % 3
            batch.append({"id": again.request_id, "truth": truth})
        duplicates_left -= duplicates
        rng.shuffle(batch)  # type: ignore[arg-type]
        for start in range(0, len(batch), LABELS_PER_REQUEST):
            pipeline.post(batch[start : start + LABELS_PER_REQUEST])
        pipeline.sent.update(joined=len(rounds[index]), unknown=unknown, duplicate=duplicates)
        labelled.extend(rounds[index])

    with ThreadPoolExecutor(CLIENTS) as clients:
        for index in range(ROUNDS):
            picks = rng.integers(0, len(model.X), per_round)
            wrong = rng.random(per_round) < WRONG_TRUTH
            ids = [
                f"gt-{index}-{k}" if k % 2 == 0 else None  # odd: the sidecar makes the id
                for k in range(per_round)
            ]
            answers = list(
                clients.map(
                    predict_until_answered,
                    [infer_url] * per_round,
                    [list(map(float, model.X[p])) for p in picks],
                    ids,
                )
            )
            predictions = []
            for (request_id, predicted, served), pick, flip in zip(
                answers, picks, wrong, strict=True
            ):
                served_by[served] += 1
                truth = int(model.y[pick])
                predictions.append(
                    Prediction(request_id, predicted, (truth + 1) % 3 if flip else truth)
                )
            rounds.append(predictions)
            if index == KILL_AFTER - 1:
                # Graceful: SIGTERM, the sidecar drains and hands its predictions over.
                victim_said = kube.follow_logs(victim, SIDECAR_CONTAINER)
                kube.run("delete", "pod", victim, "--wait=false")
                killed_at = time.monotonic()
            if index >= LAG:
                label_round(index - LAG, ROUNDS - index + LAG)
        for index in range(ROUNDS - LAG, ROUNDS):
            label_round(index, ROUNDS - index)
    sent_seconds = time.monotonic() - started

    assert served_by == {revision: PREDICTIONS}, served_by
    assert pipeline.sent == {"joined": PREDICTIONS, "unknown": UNKNOWN, "duplicate": DUPLICATES}
    correct = sum(p.predicted == p.truth for p in labelled)
    accuracy = correct / PREDICTIONS
    # The answers: each label counted once, unreachable ones resent until they joined.
    unreachable = pipeline.answered["unreachable"]
    expected = {
        "joined": PREDICTIONS,
        "duplicate": DUPLICATES,
        "unknown": UNKNOWN,
        **({"unreachable": unreachable} if unreachable else {}),
    }
    answered = {k: v for k, v in pipeline.answered.items() if v}
    assert answered == expected, (answered, pipeline.refused)

    # The victim is gone; the Deployment replaced it.
    wait_for(
        lambda: kube.get("pod", victim) is None,
        timeout=60,
        what=f"pod {victim} to be gone",
    )
    # Its handoff as its sidecar told it (said when a count below is off).
    handoff = [line for line in victim_said(30).splitlines() if "feedback" in line]
    # Status: every label of the window, by outcome, and the accuracy from them.
    counts = StatusCounts(kube, expected)
    figures = counts.wait(said=lambda: f"; the victim's sidecar said: {handoff}")
    assert figures["accuracy"] == round(accuracy, 4), (figures, accuracy)
    # Counted once: over the next two health cycles the figures stay as they are.
    held_until = time.monotonic() + 2 * HEALTH_INTERVAL + 1
    while time.monotonic() < held_until:
        assert counts.look() is not None, counts.last
        time.sleep(0.5)
    # The operator's gauges, per revision.
    assert label_gauges(operator, revision) == expected
    realized = operator.value("vigil_modeldeployment_realized_accuracy", revision=revision)
    assert realized == round(accuracy, 4), (realized, accuracy)

    # The sidecars of the pods that remain: the adopted predictions' labels and the
    # victim's last counts (handed over at its shutdown) are on them; what the operator
    # saw of the victim before, not. Never more than the whole.
    def ready_replicas() -> list[dict[str, Any]]:
        pods = [p for p in kube.revision_pods(revision) if ready(p)]
        return pods if len(pods) == REPLICAS else []

    survivors = wait_for(ready_replicas, timeout=120, what="the victim's replacement Ready")
    on_survivors = sidecar_sums(kube, survivors, revision)
    assert all(on_survivors[k] <= v for k, v in expected.items()), (on_survivors, expected)
    assert on_survivors["lost"] == on_survivors["expired"] == 0, on_survivors
    adopted = sum(
        total(pod_metrics(p["status"]["podIP"]), "vigil_feedback_handoff_predictions_total",
              outcome="adopted")
        for p in survivors
    )  # fmt: skip
    assert adopted > 0, "no pod adopted the victim's predictions"
    operator.assert_no_errors()
    record(
        "labels-counted-exactly",
        revision=revision,
        predictions=PREDICTIONS,
        labels_sent=dict(pipeline.sent),
        answered=answered,
        refused=dict(pipeline.refused),
        resent_ids=pipeline.resent_ids,
        status=figures,
        accuracy_by_hand=round(accuracy, 6),
        correct=correct,
        adopted_predictions=int(adopted),
        on_survivors=dict(on_survivors),
        seconds_sending=round(sent_seconds, 1),
        seconds_from_kill_to_end=round(time.monotonic() - killed_at, 1),
    )


#: Predictions each pod holds in the SIGKILL test: half under ids of ours, half under
#: the ids its sidecar makes.
HELD_PER_POD = 40
#: Fewer labels than minLabels over a history shorter than the labels' window hold the
#: last verdict (what an operator restart needs), so minLabels stays below the 40 joined.
FEW_LABELS = {"minLabels": 20, "window": "1h"}


def test_a_sidecar_killed_loses_its_predictions_and_their_labels_are_counted_not_dropped(
    kube: Kube, operator: OperatorProcess, store: ModelStore
) -> None:
    """docs/design/ground-truth.md's failure table, the SIGKILL row, on the real node: a
    sidecar killed (no drain, no handoff) loses the predictions it held. Its container is
    restarted in the same pod; labels for those predictions, sent through the Service,
    count as ``lost`` (ids its sidecar made: they name its address and a time before the
    restart) or ``unknown`` (ids of ours name nothing), never joined and never dropped;
    the other pod's predictions join as before."""
    model = store.train("wine")
    document = store.manifest(model, replicas=2)
    document["spec"]["monitoring"]["performance"] = FEW_LABELS
    serve(kube, model, document)
    revision = str(status(kube)["stable"]["revision"])
    pods = kube.revision_pods(revision)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    victim, survivor = pods
    name, ip = victim["metadata"]["name"], pod_ip(victim)
    service = kube.get("service", "wine")
    assert service is not None
    pipeline = Pipeline(f"http://{service['spec']['clusterIP']}:{FEEDBACK_PORT}{FEEDBACK_PATH}")

    # Each pod serves its own predictions (sent to its IP, so we know which holds which).
    # Rows of every class, a fifth of the truths another class: accuracy far from 1.
    rng = np.random.default_rng(23)
    held: dict[str, list[Prediction]] = {}
    for pod in pods:
        url = sidecar_url(pod_ip(pod), f"/v2/models/{model.name}/infer")
        pod_name = pod["metadata"]["name"]
        held[pod_name] = []
        for k in range(HELD_PER_POD):
            row = int(rng.integers(0, len(model.X)))
            request_id = f"{pod_name}-{k}" if k % 2 == 0 else None
            features = list(map(float, model.X[row]))
            answered_id, predicted, served = predict(url, features, request_id)
            assert served == revision, served
            truth = int(model.y[row])
            if rng.random() < WRONG_TRUTH:
                truth = (truth + 1) % 3
            held[pod_name].append(Prediction(answered_id, predicted, truth))

    # SIGKILL the victim's sidecar: its in-memory store goes with the process.
    started_before = sidecar_started_at(ip)
    assert started_before > 0, f"the sidecar of {name} at {ip} shows no start time"
    assert kill_container(victim, "vigil-sidecar"), f"no sidecar process in pod {name}"
    wait_for(
        lambda: sidecar_started_at(ip) > started_before and ready(kube.get("pod", name) or {}),
        timeout=90,
        what=f"the sidecar of {name} restarted by the kubelet and the pod Ready again",
    )
    restarted = kube.get("pod", name) or {}
    assert restart_count(restarted, SIDECAR_CONTAINER) == 1, restarted.get("status")
    assert restart_count(restarted, SERVER_CONTAINER) == 0, restarted.get("status")

    # Every label through the Service, shuffled: kube-proxy picks the pod for each request.
    labels = [
        {"id": p.request_id, "truth": p.truth} for predictions in held.values() for p in predictions
    ]
    np.random.default_rng(5).shuffle(labels)  # type: ignore[arg-type]
    for start in range(0, len(labels), 20):
        pipeline.post(labels[start : start + 20])

    kept = held[survivor["metadata"]["name"]]
    lost = [p for p in held[name] if not p.request_id.startswith(f"{name}-")]  # sidecar ids
    expected = {"joined": len(kept), "lost": len(lost), "unknown": HELD_PER_POD - len(lost)}
    unreachable = pipeline.answered["unreachable"]
    answered = {k: v for k, v in pipeline.answered.items() if v}
    assert answered == {**expected, **({"unreachable": unreachable} if unreachable else {})}, (
        answered,
        pipeline.refused,
    )
    accuracy = sum(p.predicted == p.truth for p in kept) / len(kept)

    # Status and the operator's gauges say the same, per outcome.
    figures = StatusCounts(kube, expected).wait()
    assert figures["accuracy"] == round(accuracy, 4), (figures, accuracy)
    assert label_gauges(operator, revision) == expected
    operator.assert_no_errors()
    record(
        "sidecar-killed-labels",
        revision=revision,
        held_per_pod=HELD_PER_POD,
        answered=answered,
        refused=dict(pipeline.refused),
        status=figures,
        accuracy_by_hand=round(accuracy, 6),
    )
