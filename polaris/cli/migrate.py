"""`polaris migrate`: apply pending SQL migrations."""

from __future__ import annotations

import argparse

from polaris.cli.database import run_with_connection
from polaris.db.migrate import load_migrations, migrate, pending_migrations


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply every pending migration, each in its own transaction, under an advisory lock. "
        "Needs only DATABASE_URL (or a local .polaris/ data dir).",
    )
    p.add_argument("--check", action="store_true", help="only list pending migrations; exit 1 if any")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    migrations = load_migrations()

    async def work(conn):
        if args.check:
            return await pending_migrations(conn, migrations)
        return await migrate(conn, migrations)

    done = run_with_connection(args.settings, work)
    if args.check:
        for m in done:
            print(f"pending {m.filename}")
        print(f"{len(done)} pending migration(s)")
        return 1 if done else 0
    for m in done:
        print(f"applied {m.filename}")
    print(f"database is current ({len(migrations)} migration(s), {len(done)} applied now)")
    return 0
