"""Desired child objects of a ModelDeployment, as plain manifests.

Per revision: a Deployment `<name>-<revision>` whose pods run the model
server and the Vigil sidecar in front of it, and a ConfigMap
`<name>-<revision>-sidecar` with the sidecar's settings. Per
ModelDeployment: a Service `<name>` that sends live traffic to the serving
revision's sidecars. One module per concern:

- :mod:`~vigil.core.desired.meta`: owner, metadata, the applied hash, ``needs_write``;
- :mod:`~vigil.core.desired.pod`: the pods' containers, ports, paths and volumes;
- :mod:`~vigil.core.desired.deployment`: a revision's Deployment and sidecar settings;
- :mod:`~vigil.core.desired.services`: the live, per-revision and peers Services.
"""

# The package's face: what the reconcile, the adapters and the tests use.
from vigil.core.desired.deployment import *  # noqa: F403
from vigil.core.desired.meta import *  # noqa: F403
from vigil.core.desired.pod import *  # noqa: F403
from vigil.core.desired.services import *  # noqa: F403
