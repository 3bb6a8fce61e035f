"""YAML for the Go programs that read it: kubectl, the API server, the kubelet, Prometheus, Flux.

PyYAML writes a string plainly unless *PyYAML* would read it back as something
else, and Go's YAML libraries read more as numbers and booleans than PyYAML
does: ``63e1`` (630), ``0o17``, ``-1e-3``, ``y`` and ``N`` go out plain and come
back to kubectl as a number or a boolean, which a string field refuses. Every
document the project writes for a Go reader goes through ``dump``/``dump_all``,
which quote such strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

# What go-yaml (v2, through sigs.k8s.io/yaml, and v3) resolves a plain scalar to when it
# is not a string: integers in any base (underscores allowed), floats with or without a
# point, and the YAML 1.1 booleans, nulls and float words.
_GO_NUMBER = re.compile(
    r"[-+]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?)"
)
_GO_WORDS = frozenset(
    {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "<<"}
    | {".inf", "+.inf", "-.inf", ".nan"}
)


def read_otherwise_by_go(value: str) -> bool:
    """Whether Go's YAML would read ``value``, written plainly, as other than this string."""
    return value == "" or value.lower() in _GO_WORDS or bool(_GO_NUMBER.fullmatch(value))


class _GoReadableDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings Go reads otherwise."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if read_otherwise_by_go(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_GoReadableDumper.add_representer(str, _represent_str)


def dump(document: Any, *, sort_keys: bool = True) -> str:
    """``yaml.safe_dump`` as Go reads it back."""
    return yaml.dump(document, Dumper=_GoReadableDumper, sort_keys=sort_keys)


def dump_all(documents: Iterable[Any], *, sort_keys: bool = True) -> str:
    """``yaml.safe_dump_all`` as Go reads it back."""
    return yaml.dump_all(documents, Dumper=_GoReadableDumper, sort_keys=sort_keys)
