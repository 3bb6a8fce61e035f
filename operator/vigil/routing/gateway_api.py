"""Gateway API routing: exact weights on a user's HTTPRoute.

Set ``spec.rollout.trafficRouting.gatewayAPI.httpRoute: <route>``. The
HTTPRoute belongs to the user (it names the Gateway, hostnames, paths);
Vigil only rewrites the backendRefs that point at this ModelDeployment,
Services in its namespace:

* the Service ``<name>``, and the stable's and the candidate's revision
  Services ``<name>-<revision>``, ours by name;
* any other ``<name>-<7 hex digits>`` (``REVISION_LENGTH``) left in the
  route (an older revision, an operator stopped between two writes) only
  when it is ours: it exists and carries this ModelDeployment's label
  (``naming.LABEL_MODEL_DEPLOYMENT: <name>``, as every Service of its
  own), or it does not exist (a dangling ref to a revision Service already
  deleted). One that exists without that label (another team's Service
  ``fraud-c0ffee1``, the Service of a ModelDeployment named
  ``fraud-c0ffee1``, labelled with that name) is left as it is.

The router reads each such Service once per ``apply``; the functions that
build the rules stay pure, given the names those reads claimed. In each
rule with a ref of ours, during a rollout, our refs become

    - {name: <name>-<stable>,    port: 80, weight: 100 - w}
    - {name: <name>-<candidate>, port: 80, weight: w}

where ``w`` is ``Traffic.candidate_weight``. Only refs on the serving port
(``SERVICE_PORT``, 80, or no port) are weighted: the revision Services
expose no other port. A ref to ``<name>`` on another port (the feedback
port, 8001: labels may reach any revision's sidecars, which forward them to
their peers) is left as it is, and one to a revision Service of ours on
another port (written by an older operator, which rewrote those too) is
moved back to ``<name>`` on that port. Without a candidate (before
the first rollout, after a promotion, a rollback, a failure) they become
the Service ``<name>`` alone (weight 100): it selects the serving revision
and lives as long as the ModelDeployment, so no revision Service stays
named in the route, and the operator deletes a revision's Service only
after the route has left it (vigil.core.reconcile orders every plan:
writes, the route, deletions). BackendRefs to other Services in the same
rule are left as they are, as are our refs' other fields (port, filters):
several of ours in one rule become one backend (or the stable's and the
candidate's pair), so they must agree in everything but name and weight
(RoutingError naming the rule otherwise: the first's filters would have
applied to all of the model's traffic there).

The write is a JSON merge patch of ``spec.rules`` carrying the
``resourceVersion`` read, so a concurrent edit of the route is never
overwritten (409, retried on a fresh read); it is sent only when the rules
differ once the CRD's defaults (``group: ""``, ``kind: Service``,
``weight: 1``) fill in every backendRef on both sides, as the API server
stores them. A 404 on the route is explained by a discovery read of
``/apis/gateway.networking.k8s.io/v1`` (then ``v1beta1``): no Gateway API
CRDs, only v1beta1 (before v1.0), or no such route. Replicas follow
``decide()`` (``ceil(w% x R)`` for the candidate, the stable at full
count) and the Service ``<name>`` keeps selecting the stable only: in-cluster clients that
call it directly bypass the gateway and stay on the stable.

GitOps: the route's weights change during a rollout; tell Argo CD to
ignore ``/spec/rules`` backendRef weights of that route (docs/rollouts.md).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Container, Mapping
from typing import Any

from vigil.common.objects import body, items
from vigil.core import naming
from vigil.core.desired import SERVICE_PORT
from vigil.core.revision import REVISION_LENGTH
from vigil.core.rollout import Traffic
from vigil.kube.client import KubeError
from vigil.routing.base import (
    DiscoveryApi,
    RoutePlan,
    RoutingApi,
    RoutingError,
    RoutingTarget,
)

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
HTTPROUTE = "HTTPRoute"
#: Conflicting writes (someone edited the route between our read and write) retried.
MAX_CONFLICT_RETRIES = 3
#: What the API server fills in on a backendRef written without them (the HTTPRoute
#: CRD's defaults, v1 and v1beta1 alike: hack/gateway-api/).
BACKEND_REF_DEFAULTS: Mapping[str, Any] = {"group": "", "kind": "Service", "weight": 1}
_REVISION = re.compile(rf"[0-9a-f]{{{REVISION_LENGTH}}}")


def revision_of(name: str, target: RoutingTarget) -> str | None:
    """The revision of a Service name ``<name>-<revision>``; None for a name of another form."""
    prefix = f"{target.name}-"
    if not name.startswith(prefix) or not _REVISION.fullmatch(name[len(prefix) :]):
        return None
    return name[len(prefix) :]


def _service_ref(ref: Mapping[str, Any], target: RoutingTarget) -> str | None:
    """The name of the Service in the target's namespace a backendRef points at, or None."""
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return None
    if (ref.get("namespace") or target.namespace) != target.namespace:
        return None
    return str(ref.get("name", ""))


def _known(target: RoutingTarget) -> set[str]:
    """The Services that are ours by name alone: ``<name>``, the stable's, the candidate's."""
    return {
        naming.service_name(target.name),
        target.revision_service(target.stable),
        target.revision_service(target.candidate or target.stable),
    }


def _ours(ref: Mapping[str, Any], target: RoutingTarget, claimed: Container[str]) -> bool:
    """Whether a backendRef points at this ModelDeployment's Service or one of its revisions'
    (``claimed``: see ``desired_rules``), on any port."""
    name = _service_ref(ref, target)
    if name is None:
        return False
    if name in _known(target):
        return True
    return revision_of(name, target) is not None and name in claimed


def _serving(ref: Mapping[str, Any]) -> bool:
    """Whether a backendRef is on the serving port (or names none, which the Service's only
    port would answer): the only port a revision Service has, so the only one weighted."""
    return ref.get("port") in (None, SERVICE_PORT)


def _weighted(ref: Mapping[str, Any], target: RoutingTarget, claimed: Container[str]) -> bool:
    """Whether a backendRef is one the router weights: ours, on the serving port."""
    return _serving(ref) and _ours(ref, target, claimed)


def _off_port_refs_back_on_the_service(
    refs: list[Any], target: RoutingTarget, claimed: Container[str]
) -> list[Any]:
    """``refs`` with each of our revision Services on another port than the serving one
    pointed back at ``<name>``, one ref per port adding up their weights.

    An older operator split such refs (the feedback port) like the serving ones, onto
    revision Services without that port; ``<name>`` has it and outlives every revision.
    """
    service = naming.service_name(target.name)
    out: list[Any] = []
    moved: dict[Any, dict[str, Any]] = {}
    for ref in refs:
        if _serving(ref) or not _ours(ref, target, claimed) or ref.get("name") == service:
            out.append(ref)
        elif ref.get("port") in moved:
            moved[ref.get("port")]["weight"] += _weight(ref)
        else:
            moved[ref.get("port")] = {**ref, "name": service, "weight": _weight(ref)}
            out.append(moved[ref.get("port")])
    return out


def revision_refs_to_read(route: Mapping[str, Any], target: RoutingTarget) -> set[str]:
    """The ``<name>-<revision>`` Services the route names that are not ours by name alone:
    whether they are ours takes a read (``owns``)."""
    known = _known(target)
    names: set[str] = set()
    for rule in items(route, "spec", "rules"):
        for ref in rule.get("backendRefs") or []:
            name = _service_ref(ref, target)
            if name is not None and name not in known and revision_of(name, target) is not None:
                names.add(name)
    return names


def owns(target: RoutingTarget, name: str, service: Mapping[str, Any] | None) -> bool:
    """Whether the Service ``name`` (as read; None: it does not exist) is a revision Service of
    the target's ModelDeployment, which the route may name only as a leftover of ours.

    One that exists is ours when it carries this ModelDeployment's label, as the
    reconciler gives every Service of its own (another ModelDeployment's carries its own
    name); one that does not exist is a dangling ref to a revision Service already
    deleted, taken back (no one else's Service can be hurt by dropping it).
    """
    if revision_of(name, target) is None:
        return False
    if service is None:
        return True
    return body(service).meta.labels.get(naming.LABEL_MODEL_DEPLOYMENT) == target.name


def desired_backends(
    target: RoutingTarget,
    traffic: Traffic,
    template: Mapping[str, Any] | None = None,
    total: int = 100,
) -> list[dict[str, Any]]:
    """Our backendRefs for this traffic (``template`` supplies port and filters), their
    weights adding up to ``total`` (the model's share of a rule it shares with others)."""
    base = {k: copy.deepcopy(v) for k, v in (template or {}).items() if k in ("port", "filters")}
    base.setdefault("port", SERVICE_PORT)
    if target.candidate is None:
        return [{**base, "name": naming.service_name(target.name), "weight": total}]
    candidate = round(total * max(0, min(100, traffic.candidate_weight)) / 100)
    return [
        {**base, "name": target.revision_service(target.stable), "weight": total - candidate},
        {
            **copy.deepcopy(base),
            "name": target.revision_service(target.candidate),
            "weight": candidate,
        },
    ]


#: The Gateway API's largest backendRef weight.
MAX_WEIGHT = 1_000_000


def _weight(ref: Mapping[str, Any]) -> int:
    """A backendRef's weight as the API reads it (1 when absent)."""
    weight = ref.get("weight", 1)
    return weight if isinstance(weight, int) and not isinstance(weight, bool) else 0


def _shares_kept(
    route: Mapping[str, Any], mine: list[Any], others: list[Any], split: bool
) -> tuple[int, list[Any]]:
    """(Our refs' total weight, the other refs) keeping each backend's share of the rule.

    A share is a weight over the rule's sum. Alone in a rule the model's refs add up to
    100 (percentages). Beside weighted backends they keep the total the model's had;
    under 100 (the default weight 1) every other weight is multiplied once when a
    candidate is ``split`` off, so that the split has percent steps and the user's
    proportions stay.
    """
    total = sum(_weight(r) for r in mine)
    if not any(_weight(r) for r in others):
        return 100, others
    if total >= 100 or not split:
        return total, others
    scale = -(-100 // total)
    scaled = [{**r, "weight": _weight(r) * scale} for r in others]
    if max(r["weight"] for r in scaled) > MAX_WEIGHT:
        raise RoutingError(
            f"HTTPRoute {body(route).meta.name or '?'}: keeping its shares would weight a "
            f"backend over {MAX_WEIGHT}: weight the model's Service at least 100 there"
        )
    return total * scale, scaled


def _refs_agree(
    route: Mapping[str, Any], index: int, mine: list[Any], target: RoutingTarget
) -> None:
    """Refuse our refs of one rule (``spec.rules[index]``) that differ in anything but name
    and weight (defaults filled in): weighted as one backend, they would all take the
    first's fields, its filters applying to traffic the others' did not."""

    def shape(ref: Mapping[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in ref.items() if k not in ("name", "weight")}
        rest.update(
            port=ref.get("port") or SERVICE_PORT,
            group=ref.get("group") or "",
            kind=ref.get("kind") or "Service",
            namespace=ref.get("namespace") or target.namespace,
        )
        return rest

    first = shape(mine[0])
    keys: set[str] = set()
    for ref in mine[1:]:
        other = shape(ref)
        keys.update(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
    if not keys:
        return
    differ = sorted(keys)
    rule = items(route, "spec", "rules")[index]
    named = f" ({rule['name']})" if isinstance(rule.get("name"), str) and rule["name"] else ""
    raise RoutingError(
        f"HTTPRoute {body(route).meta.name or '?'}: spec.rules[{index}]{named} has "
        f"{len(mine)} backendRefs to this model that differ in {', '.join(differ)}: they "
        "are weighted as one backend, with one ref's fields; give them the same "
        f"{', '.join(differ)}, keep one, or put them in rules of their own"
    )


def desired_rules(
    route: Mapping[str, Any],
    target: RoutingTarget,
    traffic: Traffic,
    *,
    claimed: Container[str],
) -> list[dict[str, Any]]:
    """The route's rules with our backendRefs rewritten; RoutingError if none are ours.

    ``claimed``: the ``<name>-<revision>`` Services, besides the stable's and the
    candidate's, that are ours (``owns``; the router reads them); the others of that form
    are left as they are.
    """
    rules = copy.deepcopy(list(items(route, "spec", "rules")))
    found = weighted = False
    split = target.candidate is not None
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not rule.get("backendRefs"):
            continue
        refs = _off_port_refs_back_on_the_service(list(rule["backendRefs"]), target, claimed)
        if refs != rule["backendRefs"]:
            rule["backendRefs"] = refs
        mine = [r for r in refs if _weighted(r, target, claimed)]
        if not mine:
            continue
        found = True
        if not any(_weight(r) for r in mine):
            continue  # weighted out of this rule by its owner: no traffic to the model
        weighted = True
        _refs_agree(route, index, mine, target)
        others = [r for r in refs if not _weighted(r, target, claimed)]
        total, others = _shares_kept(route, mine, others, split)
        rule["backendRefs"] = desired_backends(target, traffic, mine[0], total) + others
    if found and not weighted and split and traffic.candidate_weight > 0:
        raise RoutingError(
            f"HTTPRoute {body(route).meta.name or '?'} weights Service "
            f"{naming.service_name(target.name)} 0 in every rule naming it: the candidate "
            "gets no live traffic"
        )
    if not found:
        name = body(route).meta.name or "?"
        raise RoutingError(
            f"HTTPRoute {name} has no backendRef to Service {naming.service_name(target.name)} "
            f"or to a revision Service {target.name}-<revision> of its own on port "
            f"{SERVICE_PORT} (or without a port): add "
            f"'backendRefs: [{{name: {target.name}, port: {SERVICE_PORT}}}]' to the rule "
            "that should serve this model"
        )
    return rules


def as_stored(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rules`` with the HTTPRoute CRD's defaults on every backendRef, as the API server
    stores them (a copy; ``BACKEND_REF_DEFAULTS``)."""
    stored = copy.deepcopy(rules)
    for rule in stored:
        if isinstance(rule, dict) and rule.get("backendRefs"):
            rule["backendRefs"] = [{**BACKEND_REF_DEFAULTS, **ref} for ref in rule["backendRefs"]]
    return stored


def route_patch(
    route: Mapping[str, Any],
    target: RoutingTarget,
    traffic: Traffic,
    *,
    claimed: Container[str],
) -> dict[str, Any] | None:
    """The merge patch that sets the weights, or None when the route already has them
    (``claimed``: see ``desired_rules``).

    Compared with the CRD's defaults on both sides: the server fills them in on the
    refs we write, which would otherwise differ from ours on every cycle.
    """
    rules = desired_rules(route, target, traffic, claimed=claimed)
    if as_stored(rules) == as_stored(list(items(route, "spec", "rules"))):
        return None
    version = body(route).meta.resource_version
    patch: dict[str, Any] = {"spec": {"rules": rules}}
    if version:
        patch["metadata"] = {"resourceVersion": version}
    return patch


def route_weights(
    route: Mapping[str, Any], target: RoutingTarget, *, claimed: Container[str]
) -> dict[str, int]:
    """Our weighted backends (serving port) and their weights as the route has them
    (Service name -> weight; ``claimed``: see ``desired_rules``)."""
    weights: dict[str, int] = {}
    for rule in items(route, "spec", "rules"):
        for ref in rule.get("backendRefs") or []:
            if _weighted(ref, target, claimed):
                weights[str(ref["name"])] = int(ref.get("weight", 1))
    return weights


def revisions_weighted(
    route: Mapping[str, Any], target: RoutingTarget, *, claimed: Container[str]
) -> tuple[str, ...]:
    """Our revision Services the route sends traffic to (a weight over 0, any port), sorted:
    a refused route left as it is keeps them serving (``claimed``: see ``desired_rules``)."""
    live = naming.service_name(target.name)
    return tuple(
        sorted(
            {
                str(ref["name"])
                for rule in items(route, "spec", "rules")
                for ref in rule.get("backendRefs") or []
                if _ours(ref, target, claimed) and ref["name"] != live and _weight(ref)
            }
        )
    )


def not_found_message(
    namespace: str, route: str, served: Mapping[str, frozenset[str] | None]
) -> str:
    """The cause of a 404 on the route and its fix; ``served``: API version -> resources
    discovery lists (None: not served), empty when discovery was not possible."""
    create = (
        f"create the HTTPRoute {route} in namespace {namespace} "
        "(or name an existing one in spec.rollout.trafficRouting.gatewayAPI.httpRoute)"
    )
    install = (
        f"install the Gateway API CRDs, v1.0 or later (they serve HTTPRoute as {GROUP}/{VERSION})"
    )
    if not served:
        return f"HTTPRoute {namespace}/{route} does not exist: {create}; or {install}"
    if "httproutes" in (served.get(VERSION) or ()):
        return f"HTTPRoute {namespace}/{route} does not exist: {create}"
    if "httproutes" in (served.get("v1beta1") or ()):
        return (
            f"the cluster serves HTTPRoute only as {GROUP}/v1beta1 (Gateway API before v1.0); "
            f"Vigil needs {GROUP}/{VERSION}: upgrade the Gateway API CRDs to v1.0 or later"
        )
    return (
        f"the cluster does not serve HTTPRoute (the Gateway API CRDs are not installed): {install}"
    )


def not_accepted(route: Mapping[str, Any]) -> str:
    """Why no Gateway the route names takes it ("": one does, or none has said yet), from
    the ``Accepted`` condition each parent's controller writes for the route's generation:
    weights written on a route no Gateway accepted carry no traffic, and the rollout would
    hold on too few requests. A parent no longer in ``spec.parentRefs`` (an entry a
    controller left behind) and a condition of an older generation are not read."""
    view = body(route)
    named = {_parent_key(ref, view.meta.namespace) for ref in items(route, "spec", "parentRefs")}
    refusals = []
    for parent in items(route, "status", "parents"):
        ref = parent.get("parentRef") or {}
        if _parent_key(ref, view.meta.namespace) not in named:
            continue
        accepted = next((c for c in items(parent, "conditions") if c.get("type") == "Accepted"), {})
        current = accepted.get("observedGeneration", view.meta.generation) == view.meta.generation
        if accepted.get("status") != "False" or not current:
            return ""
        refusals.append(
            f"{ref.get('name', '?')} ({accepted.get('reason', '?')}: {accepted.get('message', '')})"
        )
    if not refusals:
        return ""
    return "is accepted by no Gateway, so the weights carry no traffic: " + "; ".join(refusals)


def _parent_key(ref: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    return (
        str(ref.get("name", "")),
        str(ref.get("namespace") or namespace),
        str(ref.get("sectionName", "")),
    )


class GatewayAPIRouter:
    """Weights on one HTTPRoute; replicas as decide() asks; the Service stays on the stable.

    ``apply`` raises RoutingError when the route cannot point at this model
    (missing, or no backendRef of ours: then no route names our Services
    either), KubeError when the API refused or failed, on the route or on a
    Service it reads to tell whether a ref is ours (the route may still name
    what it named). On a missing route, API discovery (when the API
    offers it) tells which cause it is: Gateway API CRDs not installed, only
    ``v1beta1`` served, or no route of that name.
    """

    kind = "gatewayAPI"

    def __init__(self, http_route: str) -> None:
        self.http_route = http_route

    def plan(self, target: RoutingTarget, traffic: Traffic) -> RoutePlan:
        replicas = {target.stable: traffic.stable_replicas}
        weight = 0
        if target.candidate is not None:
            replicas[target.candidate] = traffic.candidate_replicas
            weight = max(0, min(100, traffic.candidate_weight))
        return RoutePlan(
            replicas=replicas,
            service_selector=naming.selector_labels(target.name, target.stable),
            effective_weight=float(weight),
        )

    async def apply(
        self, api: RoutingApi, target: RoutingTarget, traffic: Traffic, *, write: bool = True
    ) -> RoutePlan:
        """Read the route, patch its weights when they differ (optimistic concurrency;
        ``write`` False: read it and raise what a write would, writing nothing)."""
        read: dict[str, bool] = {}  # Service name -> ours, across the conflict retries
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            route = await api.get(HTTPROUTE, target.namespace, self.http_route)
            if route is None:
                raise await self.not_found(api, target.namespace)
            claimed = await self.claimed(api, target, route, read)
            try:
                patch = route_patch(route, target, traffic, claimed=claimed)
            except RoutingError as error:
                weighted = revisions_weighted(route, target, claimed=claimed)
                raise RoutingError(str(error), weighted=weighted) from None
            if patch is None or not write:
                break
            try:
                await api.patch(HTTPROUTE, target.namespace, self.http_route, patch)
                break
            except KubeError as error:
                if error.status != 409 or attempt == MAX_CONFLICT_RETRIES:
                    raise
        refused = not_accepted(route)
        if refused:
            raise RoutingError(f"HTTPRoute {self.http_route} {refused}")
        return self.plan(target, traffic)

    @staticmethod
    async def claimed(
        api: RoutingApi, target: RoutingTarget, route: Mapping[str, Any], read: dict[str, bool]
    ) -> frozenset[str]:
        """The ``<name>-<revision>`` Services the route names that are ours (``owns``), each
        read once per apply (``read`` keeps the answers).

        A failed read (a KubeError; a 404 is None, not an error) is raised, like a failed
        read of the route: the cycle stops before its deletions and is retried. Leaving
        the ref instead would write a rule that may keep one of our revisions weighted
        next to the new ones, and let the cycle delete what it still names.
        """
        for name in sorted(revision_refs_to_read(route, target) - read.keys()):
            read[name] = owns(target, name, await api.get("Service", target.namespace, name))
        return frozenset(name for name, ours in read.items() if ours)

    async def not_found(self, api: RoutingApi, namespace: str) -> RoutingError:
        """Why the GET of the route found nothing, told apart by API discovery when the API
        offers it: no Gateway API, only its v1beta1 (before v1.0), or no such route."""
        served: dict[str, frozenset[str] | None] = {}
        if isinstance(api, DiscoveryApi):
            try:
                for version in (VERSION, "v1beta1"):
                    served[version] = await api.served_resources(f"{GROUP}/{version}")
                    if "httproutes" in (served[version] or ()):
                        break
            except KubeError:
                served = {}  # discovery failed: say every cause
        return RoutingError(not_found_message(namespace, self.http_route, served))
