"""vigil-sidecar: a monitoring reverse proxy in front of a model server.

Entry point :func:`vigil.sidecar.main.main`. Settings schema and metric
names: ``docs/sidecar.md``.
"""
