"""`polaris import steve`: bring a SteVe deployment over (chargers, cards, customers, sessions).

Needs only the database (DATABASE_URL or the local embedded one) and SteVe's: its MySQL /
MariaDB URL, and optionally the original web app's Postgres (`--polaris-db`) for the QR
public ids printed on stickers and what it already billed. Run it twice: nothing doubles.
`--dry-run` prints what it would do and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys

from polaris.cli.database import run_with_connection
from polaris.cli.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="bring data over from the system Polaris replaces",
                       description="Bring data over from the system Polaris Express replaces.")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    s = kinds.add_parser(
        "steve", help="a SteVe database: chargers, cards, customers, reservations, sessions",
        description="Read a SteVe database (MySQL/MariaDB) and bring over its chargers (with their security "
                    "profile and password), OCPP tags, users with an e-mail as customers, reservations and "
                    "sessions with their meter values. Idempotent; prints what it could not map.")
    s.add_argument("--steve-db", required=True, metavar="MYSQL_URL",
                   help="SteVe's database, e.g. mysql://steve:PASSWORD@127.0.0.1:3306/stevedb")
    s.add_argument("--polaris-db", metavar="POSTGRES_URL",
                   help="the original web app's Postgres: keeps its 8-character QR public ids, Lago subscriptions "
                        "per card and what it billed")
    s.add_argument("--dry-run", action="store_true", help="print what would be imported; write nothing")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=import_steve)


def import_steve(args: argparse.Namespace) -> int:
    from polaris.importers.steve import import_steve as run
    from polaris.importers.steve.source import SourceError, read_original, read_steve

    async def work(conn):
        try:
            data = await read_steve(args.steve_db)
            original = await read_original(args.polaris_db) if args.polaris_db else None
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        return await run(conn, data, original, dry_run=args.dry_run)

    report = run_with_connection(args.settings, work)
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(report.lines()))
    return 0
