"""The pure core: no I/O, no kopf, no kubernetes client.

Everything here takes plain data (dicts, dataclasses, numbers, timestamps)
and returns plain data, so it is unit-tested exhaustively and reused by the
operator, the sidecar and the CLI alike.
"""
