"""The stable's sidecar settings during a rollout: shadow copies (the live settings with
``shadow`` set), and a settings ConfigMap deleted meanwhile made again from its Deployment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.common.objects import body, items
from vigil.core import naming
from vigil.core.desired import (
    SIDECAR_CONFIG_KEY,
    SIDECAR_CONTAINER,
    RevisionInfo,
    kept_settings,
    settings_configmap,
)
from vigil.core.observed import DeploymentView
from vigil.core.reconcile.cycle import Cycle
from vigil.core.reconcile.plan import Apply
from vigil.core.shadow import spec_task, with_shadow


def set_stable_shadow(
    cycle: Cycle, stable_view: DeploymentView, shadow: Mapping[str, Any] | None
) -> bool:
    """Set (or clear) the shadow block in the stable's live sidecar settings; False when
    they are missing and cannot be made again (:func:`make_settings_again`).

    The stable's ConfigMap was rendered from an older spec: its settings are
    taken from the live object and only ``shadow`` changes (the sidecar
    re-reads it at run time).
    """
    shadow = with_task(cycle, stable_view.revision, shadow)
    name = naming.sidecar_configmap_name(cycle.obs.owner.name, stable_view.revision)
    live = cycle.live.get(("ConfigMap", name))
    if live is None:
        return make_settings_again(cycle, stable_view.revision, shadow)
    configmap = body(live)
    text = configmap.data.get(SIDECAR_CONFIG_KEY)
    changed = None if text is None else with_shadow(text, shadow)
    if changed is None:
        return True
    data = {**configmap.data, SIDECAR_CONFIG_KEY: changed}
    cycle.plan.actions.append(Apply(cycle.reapplied(live, "v1", "ConfigMap", data=data)))
    return True


def make_settings_again(
    cycle: Cycle, revision: str, shadow: Mapping[str, Any] | None = None
) -> bool:
    """A live revision's settings ConfigMap, deleted (outside the operator) while the spec
    renders another revision, made again from the copy its Deployment carries (the same
    bytes: its pods restart for nothing), with ``shadow`` set. False: no copy (a Deployment
    rendered by an operator from before it), not made again."""
    owner = cycle.obs.owner
    live = cycle.live_deployment(revision)
    settings = kept_settings(live) if live is not None else None
    if live is None or settings is None:
        return False
    role = str(body(live).meta.labels.get(naming.LABEL_ROLE) or settings.get("role"))
    manifest = settings_configmap(owner, RevisionInfo(revision, "", role), settings)
    text = manifest["data"][SIDECAR_CONFIG_KEY]
    if shadow is not None:
        data = {SIDECAR_CONFIG_KEY: with_shadow(text, shadow) or text}
        manifest = cycle.reapplied(manifest, "v1", "ConfigMap", data=data)
    cycle.ensure(manifest)
    return True


def with_task(
    cycle: Cycle, revision: str, shadow: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The block with ``task`` when the spec names one (:func:`spec_task`), else a reference
    profile read this cycle, and the stable's sidecar runs this operator's image: an older
    sidecar refuses a settings file with a key it does not know, and would copy nothing (it
    then guesses the task, as before)."""
    task = spec_task(cycle.spec) if cycle.spec is not None and shadow is not None else ""
    if shadow is not None and not task and cycle.obs.rollout is not None:
        task = cycle.obs.rollout.profile_task
    if not task or _sidecar_image(cycle, revision) != cycle.obs.sidecar_image:
        return shadow
    return {**(shadow or {}), "task": task}


def _sidecar_image(cycle: Cycle, revision: str) -> str | None:
    """The image the sidecar container of a live revision's pods runs (None: unknown)."""
    live = cycle.live_deployment(revision)
    for container in items(live, "spec", "template", "spec", "containers"):
        if isinstance(container, Mapping) and container.get("name") == SIDECAR_CONTAINER:
            image = container.get("image")
            return str(image) if image else None
    return None
