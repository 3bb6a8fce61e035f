"""The end-to-end tests' kit: one copy of every helper the suites share.

By concern:

- ``kit.kube``: kubectl bound to a namespace, fresh namespaces, pods and their logs, RBAC checks,
  reads that tolerate an absent API server;
- ``kit.status``: a ModelDeployment's status and conditions, what a failure shows
  of them, and what waits end on (``promoted``, ``rolled_back`` ...);
- ``kit.waits``: bounded polling (``wait_for``, ``wait_status``, ``wait_settled``) and the ``Watch``
  that records what a rollout went through (``watch_until``);
- ``kit.modeldeployment``: the ModelDeployment manifests, a model deployed and
  serving (``serve``), with live traffic (``deploy``);
- ``kit.traffic``: HTTP, request bodies and ``ModelEndpoint``, the one place that
  knows how a client's request reaches a model;
- ``kit.metrics``: scraping and sample parsing, Prometheus;
- ``kit.operator``: the operator process, its installation, ``kubectl vigil``;
- ``kit.incluster``: a test's namespace on the real node (images, the model volume,
  the kit's manifests placed there, ``deploy`` with traffic through the Service) and
  the operator running in the cluster as the manifests' Deployment (``kill`` kills
  its pod);
- ``kit.modelpods``: model pods as plain objects (no operator);
- ``kit.figures``: measured figures appended for the report;
- ``kit.backend_watch``: a watch of Services and HTTPRoutes in etcd order;
- ``kit.gitserver``: a Git repository served on 127.0.0.1 by ``git http-backend``;
- ``kit.flux``: Flux's source- and kustomize-controller (``hack/build-flux.sh``) as host
  processes, their CRDs;
- ``kit.gitops``: the ``manifests/gitops/flux`` example in a test's repository, Flux's
  view of it.
"""
