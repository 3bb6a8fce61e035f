"""The Flux health of a ModelDeployment: the healthCheckExprs of manifests/gitops/flux, and kstatus.

Flux (kustomize-controller v1.9.6, fluxcd/pkg/runtime/cel) judges a kind
with healthCheckExprs like this: ``status.observedGeneration`` present and
not ``metadata.generation`` -> InProgress; then ``failed`` true -> Failed;
then ``current`` true -> Current; else InProgress; an evaluation error
(``status`` absent) -> Unknown, and Flux keeps waiting. The expressions are
read from the manifest and evaluated here by a small CEL interpreter that
knows only what they use (and refuses anything else), with CEL's rules for
``&&``, ``||`` and errors. Without healthCheckExprs Flux uses its kstatus
(fluxcd/cli-utils v1.2.3, transcribed in ``flux_kstatus``): docs/howto/gitops.md
describes both, and the tests below hold the page's rows to them.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import yaml_kit

ROOT = Path(__file__).resolve().parents[3]
KUSTOMIZATIONS = ROOT / "manifests" / "gitops" / "flux" / "kustomizations.yaml"
GITOPS_PAGE = ROOT / "docs" / "howto" / "gitops.md"


# -- a CEL interpreter for the expressions' subset --------------------------------------------


class CelError(Exception):
    """A CEL evaluation error (no such key, no such attribute, bad operand)."""


TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^'\\]*')|(?P<int>\d+)|(?P<op>&&|\|\||==|!=|[!.,()\[\]])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


def tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    text = text.strip()
    while at < len(text):
        match = TOKEN.match(text, at)
        if match is None:
            raise SyntaxError(f"CEL subset: cannot read {text[at:]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


class Parser:
    """Recursive descent over CEL's precedence: ||, &&, relations, !, member access."""

    def __init__(self, text: str) -> None:
        self.tokens = tokens(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise SyntaxError("CEL subset: unexpected end")
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise SyntaxError(f"CEL subset: expected {expected!r}, got {token[1]!r}")
        self.at += 1
        return token

    def parse(self) -> Any:
        tree = self.or_()
        if self.at != len(self.tokens):
            raise SyntaxError(f"CEL subset: trailing {self.tokens[self.at :]}")
        return tree

    def or_(self) -> Any:
        tree = self.and_()
        while self.peek() == "||":
            self.take()
            tree = ("||", tree, self.and_())
        return tree

    def and_(self) -> Any:
        tree = self.relation()
        while self.peek() == "&&":
            self.take()
            tree = ("&&", tree, self.relation())
        return tree

    def relation(self) -> Any:
        tree = self.unary()
        if self.peek() in ("==", "!=", "in"):
            op = self.take()[1]
            tree = (op, tree, self.unary())
        return tree

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return ("!", self.unary())
        return self.member()

    def member(self) -> Any:
        tree = self.primary()
        while self.peek() == ".":
            self.take()
            kind, name = self.take()
            if kind != "name":
                raise SyntaxError(f"CEL subset: field name expected, got {name!r}")
            if self.peek() == "(":
                if name != "exists":
                    raise SyntaxError(f"CEL subset: no macro {name!r}")
                self.take("(")
                variable = self.take()
                self.take(",")
                predicate = self.or_()
                self.take(")")
                tree = ("exists", tree, variable[1], predicate)
            else:
                tree = ("select", tree, name)
        return tree

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return ("const", value[1:-1])
        if kind == "int":
            return ("const", int(value))
        if value == "(":
            tree = self.or_()
            self.take(")")
            return tree
        if value == "[":
            items = []
            while self.peek() != "]":
                items.append(self.or_())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return ("list", items)
        if kind == "name" and value in ("true", "false"):
            return ("const", value == "true")
        if kind == "name" and value == "has":
            self.take("(")
            field = self.member()
            self.take(")")
            if field[0] != "select":
                raise SyntaxError("CEL subset: has() takes a field selection")
            return ("has", field[1], field[2])
        if kind == "name":
            return ("ident", value)
        raise SyntaxError(f"CEL subset: unexpected {value!r}")


def evaluate(tree: Any, env: dict[str, Any]) -> Any:
    op = tree[0]
    if op == "const":
        return tree[1]
    if op == "ident":
        if tree[1] not in env:
            raise CelError(f"no such attribute: {tree[1]}")
        return env[tree[1]]
    if op == "select":
        target = evaluate(tree[1], env)
        if not isinstance(target, dict):
            raise CelError(f"cannot select {tree[2]} from {type(target).__name__}")
        if tree[2] not in target:
            raise CelError(f"no such key: {tree[2]}")
        return target[tree[2]]
    if op == "has":
        target = evaluate(tree[1], env)
        if not isinstance(target, dict):
            raise CelError(f"has() on {type(target).__name__}")
        return tree[2] in target
    if op == "list":
        return [evaluate(item, env) for item in tree[1]]
    if op == "!":
        value = evaluate(tree[1], env)
        if not isinstance(value, bool):
            raise CelError("! on a non-bool")
        return not value
    if op in ("&&", "||"):
        # CEL's logical operators absorb an error when the other side decides.
        decisive = op == "||"
        results: list[Any] = []
        for side in tree[1:]:
            try:
                value = evaluate(side, env)
            except CelError as error:
                results.append(error)
                continue
            if not isinstance(value, bool):
                raise CelError(f"{op} on a non-bool")
            if value is decisive:
                return decisive
            results.append(value)
        for value in results:
            if isinstance(value, CelError):
                raise value
        return not decisive
    if op in ("==", "!="):
        left, right = evaluate(tree[1], env), evaluate(tree[2], env)
        return (left == right) == (op == "==")
    if op == "in":
        left, right = evaluate(tree[1], env), evaluate(tree[2], env)
        if not isinstance(right, list):
            raise CelError("in on a non-list")
        return left in right
    if op == "exists":
        items = evaluate(tree[1], env)
        if not isinstance(items, list):
            raise CelError("exists on a non-list")
        found: CelError | None = None
        for item in items:
            try:
                if evaluate(tree[3], {**env, tree[2]: item}) is True:
                    return True
            except CelError as error:
                found = error
        if found is not None:
            raise found
        return False
    raise AssertionError(op)


def cel(expression: str, obj: dict[str, Any]) -> Any:
    return evaluate(Parser(expression).parse(), obj)


def test_the_interpreter_follows_cel_on_errors_and_operators() -> None:
    assert cel("has(status.phase) && status.phase in ['A', 'B']", {"status": {"phase": "B"}})
    assert cel("has(status.phase) && status.phase == 'A'", {"status": {}}) is False
    assert cel("false && status.x == 1", {}) is False
    assert cel("status.x == 1 && false", {}) is False
    assert cel("true || status.x == 1", {}) is True
    assert cel("!(1 == 2) && 2 != 3", {}) is True
    with pytest.raises(CelError):
        cel("has(status.phase)", {})
    with pytest.raises(CelError):
        cel("true && status.x == 1", {"status": {}})
    with pytest.raises(SyntaxError):
        cel("status.conditions.all(c, true)", {})
    with pytest.raises(SyntaxError):
        cel("size(status.conditions) > 0", {})


# -- Flux's two ways of judging a ModelDeployment ------------------------------------------


def expressions() -> dict[str, str]:
    documents = yaml_kit.load_all(KUSTOMIZATIONS.read_text())
    (model,) = [d for d in documents if d and d["spec"].get("healthCheckExprs")]
    (exprs,) = model["spec"]["healthCheckExprs"]
    assert exprs["kind"] == "ModelDeployment"
    return exprs


def flux_cel(obj: dict[str, Any], exprs: dict[str, str] | None = None) -> str:
    """fluxcd/pkg/runtime/cel StatusEvaluator.Evaluate (and Unknown on its error)."""
    exprs = exprs or expressions()
    observed = (obj.get("status") or {}).get("observedGeneration")
    if isinstance(observed, int) and observed != obj["metadata"]["generation"]:
        return "InProgress"
    try:
        for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed")):
            if key in exprs and cel(exprs[key], obj) is True:
                return verdict
        if cel(exprs["current"], obj) is True:
            return "Current"
    except CelError:
        return "Unknown"
    return "InProgress"


def flux_kstatus(obj: dict[str, Any]) -> str:
    """kstatus.Compute of fluxcd/cli-utils v1.2.3 for a custom resource (no healthCheckExprs).

    Generic properties (observedGeneration only when present, then the first
    Reconciling or Stalled True), then Flux's fork's Ready fallback (not in
    upstream sigs.k8s.io/cli-utils), then Current.
    """
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"]["generation"]:
        return "InProgress"
    conditions = status.get("conditions") or []
    for c in conditions:
        if c["type"] == "Reconciling" and c["status"] == "True":
            return "InProgress"
        if c["type"] == "Stalled" and c["status"] == "True":
            return "Failed"
    for c in conditions:
        if c["type"] == "Ready":
            return "Current" if c["status"] == "True" else "InProgress"
    return "Current"


def condition(kind: str, status: str, reason: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": f"{kind} {reason}"}


def md(
    phase: str | None,
    ready: tuple[str, str] | None,
    progressing: tuple[str, str] | None,
    *,
    stalled: bool = False,
    generation: int = 3,
    observed: int | None = 3,
) -> dict[str, Any]:
    """A ModelDeployment as the operator writes it: Reconciling mirrors Progressing."""
    conditions = []
    if ready is not None:
        conditions.append(condition("Ready", *ready))
    if progressing is not None:
        conditions.append(condition("Progressing", *progressing))
        conditions.append(condition("Reconciling", *progressing))
        stall = ("True", progressing[1]) if stalled else ("False", "NotStalled")
        conditions.append(condition("Stalled", *stall))
    status: dict[str, Any] = {"conditions": conditions}
    if phase is not None:
        status["phase"] = phase
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine", "namespace": "ml", "generation": generation},
        "spec": {"model": {"version": "2"}},
        "status": status,
    }


NO_STATUS = {
    "apiVersion": "vigil.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "wine", "namespace": "ml", "generation": 1},
    "spec": {"model": {"version": "1"}},
}

# (name, object, the expressions' verdict, plain kstatus' verdict)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("no status yet (operator down)", NO_STATUS, "Unknown", "Current"),
    (
        "observedGeneration behind",
        md("Healthy", ("True", "Available"), ("False", "Complete"), observed=2),
        "InProgress",
        "InProgress",
    ),
    (
        "first deploy, pods starting",
        md("Pending", ("False", "Deploying"), ("True", "Deploying")),
        "InProgress",
        "InProgress",
    ),
    (
        "a rollout under way",
        md("Progressing", ("False", "RolloutInProgress"), ("True", "StepInProgress")),
        "InProgress",
        "InProgress",
    ),
    (
        "kubectl vigil pause",
        md("Progressing", ("False", "RolloutPaused"), ("False", "Paused")),
        "InProgress",
        "InProgress",
    ),
    (
        "spec.paused holding a new version",
        md("Progressing", ("False", "RolloutPaused"), ("False", "RolloutPaused")),
        "InProgress",
        "InProgress",
    ),
    (
        "a pause step waiting for a person",
        md("Progressing", ("False", "WaitingForPerson"), ("True", "WaitingForPerson")),
        "InProgress",
        "InProgress",
    ),
    # The bake after the switch: Ready True, yet traffic can still go back.
    (
        "baking after the switch",
        md("Healthy", ("True", "Available"), ("True", "Baking")),
        "InProgress",
        "InProgress",
    ),
    (
        "a failed bake going back",
        md("Degraded", ("True", "Available"), ("True", "BakeFailed")),
        "InProgress",
        "InProgress",
    ),
    (
        "rolled back",
        md("RolledBack", ("False", "RolledBack"), ("False", "RolledBack"), stalled=True),
        "Failed",
        "Failed",
    ),
    (
        "failed (progressDeadline)",
        md(
            "Failed",
            ("False", "ProgressDeadlineExceeded"),
            ("False", "ProgressDeadlineExceeded"),
            stalled=True,
        ),
        "Failed",
        "Failed",
    ),
    (
        "a scale-up the Deployment gave up on (serving short of replicas)",
        md(
            "Degraded",
            ("False", "ReplicasUnavailable"),
            ("False", "ReplicasUnavailable"),
            stalled=True,
        ),
        "Failed",
        "Failed",
    ),
    (
        "a newer spec waiting while a failed bake goes back",
        md("Progressing", ("False", "BakeFailed"), ("True", "BakeFailed")),
        "InProgress",
        "InProgress",
    ),
    (
        "promoted and baked",
        md("Healthy", ("True", "Available"), ("False", "Complete")),
        "Current",
        "Current",
    ),
    (
        "drift on a Ready model (phase Degraded, nothing under way)",
        md("Degraded", ("True", "Available"), ("False", "Complete")),
        "Current",
        "Current",
    ),
]


@pytest.mark.parametrize(
    ("obj", "by_exprs", "by_kstatus"),
    [pytest.param(obj, e, k, id=name) for name, obj, e, k in CASES],
)
def test_flux_verdicts(obj: dict[str, Any], by_exprs: str, by_kstatus: str) -> None:
    assert flux_cel(copy.deepcopy(obj)) == by_exprs
    assert flux_kstatus(copy.deepcopy(obj)) == by_kstatus


def test_the_current_expression_waits_for_the_bake() -> None:
    # Before the bake fix `current` needed only Ready True: Current at the switch.
    baking = md("Healthy", ("True", "Available"), ("True", "Baking"))
    assert flux_cel(baking) == "InProgress"
    going_back = md("Degraded", ("True", "Available"), ("True", "BakeFailed"))
    assert flux_cel(going_back) == "InProgress"


def test_the_page_shows_the_manifests_expressions() -> None:
    page = GITOPS_PAGE.read_text()
    block = page[page.index("  healthCheckExprs:\n") :]
    block = block[: block.index("```")]
    (documented,) = yaml_kit.load(block)["healthCheckExprs"]
    manifest = expressions()
    for key in ("apiVersion", "kind", "current", "failed"):
        assert " ".join(documented[key].split()) == " ".join(manifest[key].split()), key


# -- the operator's own status through a bake ----------------------------------------------

sys.path.insert(0, str(ROOT / "tests" / "unit" / "core"))


def test_a_bake_the_operator_runs_is_not_current_until_it_passes() -> None:
    from core_world import judged, promoted_with_bake

    world, _, _ = promoted_with_bake()

    def as_object() -> dict[str, Any]:
        return {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "wine", "namespace": "ml", "generation": world.generation},
            "spec": copy.deepcopy(world.spec),
            "status": copy.deepcopy(world.status),
        }

    assert world.condition("Ready")["status"] == "True"
    assert (flux_cel(as_object()), flux_kstatus(as_object())) == ("InProgress", "InProgress")
    judged(world, "Healthy", True, "SLOsMet", "error rate 0.0% <= 1.0%")
    world.reconcile(60)
    assert flux_cel(as_object()) == "InProgress"
    world.reconcile(600)
    assert "bake" not in world.status
    assert (flux_cel(as_object()), flux_kstatus(as_object())) == ("Current", "Current")
