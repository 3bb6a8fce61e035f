"""The kopf operator: thin handlers (handlers.py) over the reconciler (reconciler.py).

Entry point: `vigil-operator` (vigil.operator.main:main).
"""
