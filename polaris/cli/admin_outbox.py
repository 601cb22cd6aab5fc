"""`polaris admin outbox`: mail waiting, held or sent, with the links inside it.

In local mode (no CF_EMAIL_WORKER_URL) this is how a magic link is opened.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from polaris.cli.database import run_with_connection
from polaris.db.repos import email_outbox

LINK = re.compile(r"https?://[^\s<>\"')]+")


def register_admin(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("outbox", help="mail waiting or sent, with links (local mode: magic links)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--pending", action="store_true", help="only mail not sent yet (waiting or held)")
    p.add_argument("--limit", type=int, default=20, help="how many, newest first (default 20)")
    p.add_argument("--release-held", action="store_true",
                   help="put held mail back in the queue (after fixing the worker or its secret)")
    p.set_defaults(func=outbox)


def links_of(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(0).rstrip(".,;") for m in LINK.finditer(text)))


def _doc(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"].isoformat(),
        "status": row["status"],
        "to": row["to_address"],
        "category": row["category"],
        "subject": row["subject"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"].isoformat() if row["status"] == "pending" else None,
        "sent_at": row["sent_at"].isoformat() if row["sent_at"] else None,
        "last_error": row["last_error"],
        "links": links_of(row["text"]),
    }


def outbox(args: argparse.Namespace) -> int:
    if args.limit < 1:
        args.limit = 1

    async def work(conn):
        released = await email_outbox.release_held(conn) if args.release_held else None
        rows = await email_outbox.list_mail(conn, include_sent=not args.pending, limit=args.limit)
        return released, rows

    released, rows = run_with_connection(args.settings, work)
    docs = [_doc(r) for r in rows]
    if args.json:
        json.dump(docs, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if released is not None:
        print(f"{released} held mail(s) queued again")
    if not docs:
        print("(the outbox is empty)")
        return 0
    mode = "" if args.settings.email_worker_enabled else " (CF_EMAIL_WORKER_URL unset: mail stays here)"
    print(f"Newest {len(docs)} mail(s){mode}:")
    for d in docs:
        print()
        print(f"#{d['id']}  {d['created_at'][:19].replace('T', ' ')}  {d['status'].upper()}  to {d['to']}")
        print(f"    [{d['category']}] {d['subject']}")
        if d["status"] != "sent" and d["last_error"]:
            print(f"    attempts {d['attempts']}, last error: {d['last_error']}")
        for link in d["links"]:
            print(f"    link: {link}")
    return 0
