"""Manual control of rollouts: ``kubectl vigil promote|abort|pause|resume|retry NAME``.

The plugin never edits ``spec`` (GitOps owns it): it sets the annotation
``vigil.dev/request`` (and ``vigil.dev/request-id``) on the ModelDeployment;
the operator reads it with :func:`vigil.plugin.requests.parse_request`, acts,
and clears it. Contract: docs/rollouts.md, "Manual control".
"""
