"""A command group of the ``vigil`` command line (the contract of :mod:`vigil.cli`)."""

from __future__ import annotations

from typing import Any

#: Set on a group's parser: ``vigil <group>`` without a subcommand prints that group's help.
HELP_PARSER = "help_parser"


def command_group(subparsers: Any, name: str, help: str) -> Any:
    """Add the group ``name`` and return the subparsers its subcommands are added to
    (their choice lands in ``<name>_command``)."""
    group = subparsers.add_parser(name, help=help)
    group.set_defaults(**{HELP_PARSER: group})
    return group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def split_names(value: str | None) -> list[str]:
    """A comma-separated option's names (``--features "a, b"``), spaces around them dropped."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]
