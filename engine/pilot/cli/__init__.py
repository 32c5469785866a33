"""The `pilot` command line. main(argv) -> exit code: 0 ok, 1 invalid or failed, 2 usage.

Argument parsing and printing only: each subcommand module registers its own
parser and imports what it needs when it runs, so `pilot run` never pays for
the validator's imports and `pilot --version` starts instantly. The command
line is the top layer: it imports the compiler, the agent and the service
layer; nothing imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pilot import __version__
from pilot.cli import check, console, deploy, forget, keys, profile, run, service, wizard
from pilot.cli.common import EXIT_OK, EXIT_USAGE

# each module's register(sub) adds its commands
SUBCOMMANDS = (wizard, profile, run, keys, deploy, service, check, forget, console)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 itself; keep its message short
        self.print_usage(sys.stderr)
        print(f"pilot: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pilot", description="Make this computer a Home Assistant device over MQTT.")
    parser.add_argument("--version", action="version", version=f"pilot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
