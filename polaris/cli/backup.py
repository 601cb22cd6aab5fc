"""`polaris backup` / `polaris restore`: pg_dump and pg_restore of the right version."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from polaris.cli.database import resolve_database_url
from polaris.cli.errors import CommandError
from polaris.db.migrate import load_migrations
from polaris.ops.backup import BackupError, dump, restore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backup",
        help="dump the database to a file (pg_dump, custom format)",
        description="Write a pg_dump --format=custom of DATABASE_URL (or the local embedded Postgres) "
        "to FILE, mode 0600, using a pg_dump at least as new as the server. docs/backups.md.",
    )
    p.add_argument("file", metavar="FILE", type=Path)
    p.set_defaults(func=run_backup)

    p = sub.add_parser(
        "restore",
        help="restore a backup into an empty database (pg_restore)",
        description="pg_restore FILE into the database in DATABASE_URL, which must be empty (create a "
        "new database for it). All or nothing. Run `polaris migrate` afterwards when this release "
        "has newer migrations. docs/backups.md.",
    )
    p.add_argument("file", metavar="FILE", type=Path)
    p.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.settings)
    try:
        info = asyncio.run(dump(url, args.file))
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    size = args.file.stat().st_size
    print(
        f"backup written: {args.file} ({size / 1e6:.1f} MB; PostgreSQL {info.version}, "
        f"{info.migrations} migration(s) applied)"
    )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.settings)
    try:
        info = asyncio.run(restore(url, args.file))
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    known = len(load_migrations())
    print(f"restored {args.file}: {info.user_tables} table(s), {info.migrations} migration(s) applied")
    if info.migrations < known:
        print(f"this release has {known} migration(s): run `polaris migrate` next")
    return 0
