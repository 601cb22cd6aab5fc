"""Entry point of the `polaris` command.

Each subcommand lives in its own module with a `register(subparsers)` function that adds
its parser and sets `func` (a callable taking the parsed args, returning an exit code);
`COMMANDS` lists them in the order `polaris --help` shows them.
"""

from __future__ import annotations

import argparse
import sys

from polaris import __version__
from polaris.cli import (
    admin,
    backup,
    doctor,
    health,
    imports,
    migrate,
    ocpp,
    secrets,
    sim,
    smoke,
    sync,
    tui,
    up,
    web,
)
from polaris.cli.errors import CommandError
from polaris.config import ConfigError, load_settings
from polaris.logs import configure_logging

COMMANDS = (up, ocpp, web, sync, tui, sim, health, doctor, smoke, secrets, backup, migrate, admin, imports)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polaris",
        description="Polaris Express: run an EV-charging business (OCPP server, web, billing sync).",
    )
    parser.add_argument("--version", action="version", version=f"polaris {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
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
