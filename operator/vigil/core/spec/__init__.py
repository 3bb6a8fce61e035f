"""The ModelDeployment spec as typed, defaulted values: the one place that reads ``.spec``.

The API server applies the CRD's defaults, but the operator must not depend
on that alone: objects stored before a default was added, or created through
a client that skipped defaulting, still have to reconcile to the same pods
and be judged by the same thresholds. So every default of
crds/modeldeployments.yaml is written here once (:data:`CRD_DEFAULTS` names
each by its path; a test holds the table to the CRD), beside the few the CRD
leaves to the operator (the SLOs, the shadow tolerance). The rest of the
operator reads :class:`ModelDeploymentSpec`, never the raw mapping.

What an older schema or a non-validating client could let through is
reported, not raised, where the operator can still act: a section that
cannot be read keeps its defaults and says why in ``problem`` (monitoring:
the health loop skips the object; either section: a change of the model is
blocked with InvalidSpec, its rollout kept where it stood, until the spec is
fixed). What the pods cannot take (no model version, an unknown protocol) is
a :class:`SpecError`.
"""

# The package's face: the defaults, the typed spec (model), the health loop's view of it
# (health), the parser (parse, rollout_parse) and the lenient outline kubectl vigil shows
# (outline).
from vigil.core.spec.defaults import *  # noqa: F403
from vigil.core.spec.health import *  # noqa: F403
from vigil.core.spec.model import *  # noqa: F403
from vigil.core.spec.outline import *  # noqa: F403
from vigil.core.spec.parse import *  # noqa: F403
from vigil.core.spec.rollout_parse import *  # noqa: F403
