"""Vigil: a Kubernetes operator that rolls out machine-learning models safely.

The package is layered (enforced by import-linter, see pyproject.toml):
pure core modules (desired objects, rollout decisions, health, drift
statistics) import nothing that does I/O; adapters (kube client, metrics
sources, traffic routers) and kopf handlers sit on top.
"""

__version__ = "0.1.0"
