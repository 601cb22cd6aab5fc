"""`polaris secrets`: generate every secret the install guide asks for, in `.env` form."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polaris.cli.errors import CommandError
from polaris.ops.secrets import SECRETS, fill_env_file, generate, render_env


def register(sub: argparse._SubParsersAction) -> None:
    names = ", ".join(s.name for s in SECRETS)
    p = sub.add_parser(
        "secrets",
        help="generate the deployment's secrets in .env form",
        description=f"Print fresh random values for {names} as .env lines on stdout. "
        "With --write FILE, fill only the ones missing or empty in FILE and leave every set "
        "value untouched.",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object instead of .env lines")
    out.add_argument(
        "--write",
        metavar="FILE",
        type=Path,
        help="fill missing or empty secrets into FILE (created with mode 0600 if absent)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    values = generate()
    if args.write:
        try:
            result = fill_env_file(args.write, values)
        except OSError as exc:
            raise CommandError(f"cannot update {args.write}: {exc.strerror or exc}") from None
        # Names only: the values are in the file, never echoed.
        if result.added:
            print(f"added to {args.write}: {', '.join(result.added)}", file=sys.stderr)
        if result.kept:
            print(f"already set, left as they are: {', '.join(result.kept)}", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        sys.stdout.write(render_env(values))
    return 0
