"""The operator's e2e tests use the shared fixtures of tests/e2e/conftest.py as they are:
the CRD and RBAC installed, a real operator process with its ServiceAccount's token."""
