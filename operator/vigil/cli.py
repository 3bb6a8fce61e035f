"""The ``vigil`` command line (also installed as the kubectl plugin ``kubectl-vigil``).

Each group of subcommands lives in its own module that exposes
``register(subparsers)``; it adds its parsers and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code) on
each leaf parser. To add a group, append its module path to
:data:`COMMAND_MODULES`: nothing else in this file changes, so several
people can add commands without touching each other's code.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from collections.abc import Sequence

from vigil.common.commands import HELP_PARSER

#: Modules that contribute subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "vigil.profile.cli",
    "vigil.plugin.cli",
    "vigil.plugin.status_cli",
    "vigil.plugin.report.cli",
    "vigil.validation.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every registered command group."""
    parser = argparse.ArgumentParser(
        prog="vigil",
        description="Vigil: roll out machine-learning models safely and watch them.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse the arguments and run the chosen command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # A group without a subcommand (``vigil profile``) prints its own help.
        help_parser = getattr(args, HELP_PARSER, parser)
        help_parser.print_help(sys.stderr)
        return 2
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A terminal that cannot show the marks (a Latin-1 locale, a Windows pipe): "?"
        # in their place, not a traceback.
        sys.stdout.reconfigure(errors="replace")
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
