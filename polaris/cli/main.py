"""Entry point of the `polaris` command.

Each subcommand lives in its own module with a `register(subparsers)` function that adds
its parser and sets `func` (a callable taking the parsed args, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from polaris import __version__
from polaris.cli.errors import CommandError
from polaris.config import ConfigError, load_settings
from polaris.logs import configure_logging

# Modules that add subcommands, in the order `polaris --help` lists them. A module that
# does not exist yet (its feature has not landed) is skipped.
COMMAND_MODULES = [
    "polaris.cli.up",
    "polaris.cli.ocpp",
    "polaris.cli.web",
    "polaris.cli.sync",
    "polaris.cli.tui",
    "polaris.cli.sim",
    "polaris.cli.health",
    "polaris.cli.doctor",
    "polaris.cli.smoke",
    "polaris.cli.secrets",
    "polaris.cli.backup",
    "polaris.cli.migrate",
    "polaris.cli.admin",
]


def available_commands() -> list[str]:
    """Names of the subcommands whose modules exist."""
    return [m.rsplit(".", 1)[1] for m in COMMAND_MODULES if importlib.util.find_spec(m) is not None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polaris",
        description="Polaris Express: run an EV-charging business (OCPP server, web, billing sync).",
    )
    parser.add_argument("--version", action="version", version=f"polaris {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        # A monitoring plugin (`polaris health`) says UNKNOWN (3) when it cannot even start.
        return getattr(args, "config_error_exit", 1)
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    args.settings = settings
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"polaris {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
