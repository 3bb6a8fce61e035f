"""YAML for the tests, read with libyaml (PyYAML's C parser).

The same objects as ``yaml.safe_load`` at about a tenth of the CPU: the 78 kB CRD alone
is parsed a dozen times a run (bench/README.md, unit suite).
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_LOADER))
