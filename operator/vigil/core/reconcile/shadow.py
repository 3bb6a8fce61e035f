"""Shadow copies during a rollout: the stable's live sidecar settings, with ``shadow`` set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.common.objects import body
from vigil.core import naming
from vigil.core.desired import SIDECAR_CONFIG_KEY
from vigil.core.observed import DeploymentView
from vigil.core.reconcile.cycle import Cycle
from vigil.core.reconcile.plan import Apply
from vigil.core.shadow import with_shadow


def set_stable_shadow(
    cycle: Cycle, stable_view: DeploymentView, shadow: Mapping[str, Any] | None
) -> bool:
    """Set (or clear) the shadow block in the stable's live sidecar settings; False when
    they are missing (the ConfigMap deleted outside the operator: nothing to set).

    The stable's ConfigMap was rendered from an older spec: its settings are
    taken from the live object and only ``shadow`` changes (the sidecar
    re-reads it at run time).
    """
    name = naming.sidecar_configmap_name(cycle.obs.owner.name, stable_view.revision)
    live = cycle.live.get(("ConfigMap", name))
    if live is None:
        return False
    configmap = body(live)
    text = configmap.data.get(SIDECAR_CONFIG_KEY)
    changed = None if text is None else with_shadow(text, shadow)
    if changed is None:
        return True
    data = {**configmap.data, SIDECAR_CONFIG_KEY: changed}
    cycle.plan.actions.append(Apply(cycle.reapplied(live, "v1", "ConfigMap", data=data)))
    return True
