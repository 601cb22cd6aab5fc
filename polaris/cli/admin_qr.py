"""Admin commands for the customer side.

`polaris admin charger qr CHARGE_BOX_ID [--png FILE | --svg FILE]`: the QR code to stick on a
charger; it opens the charger's page in the portal ({CUSTOMER_BASE_URL}/c/{public_id}).
`polaris admin customer invite EMAIL`: mail a customer a sign-in link valid for 24 hours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import segno

from polaris.cli.admin_common import run_action
from polaris.cli.database import run_with_connection
from polaris.cli.errors import CommandError
from polaris.db.repos import charge_boxes


def register_admin(groups: argparse._SubParsersAction) -> None:
    charger = groups.choices["charger"]
    actions = next(a for a in charger._actions if isinstance(a, argparse._SubParsersAction))
    p = actions.add_parser(
        "qr",
        help="print a charger's QR code (opens its page in the customer portal)",
        description="Print the QR code of CUSTOMER_BASE_URL/c/{public id} in the terminal, "
        "or write it as PNG or SVG for printing.",
    )
    p.add_argument("charge_box_id", metavar="CHARGE_BOX_ID")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--png", metavar="FILE", type=Path, help="write a PNG (10 pixels per module)")
    out.add_argument("--svg", metavar="FILE", type=Path, help="write an SVG (scales to any print size)")
    p.set_defaults(func=charger_qr)

    customer = groups.choices["customer"]
    actions = next(a for a in customer._actions if isinstance(a, argparse._SubParsersAction))
    p = actions.add_parser(
        "invite",
        help="mail a customer a sign-in link valid for 24 hours",
        description="Queue an invitation (a one-use sign-in link, valid 24 hours) in the email outbox.",
    )
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=customer_invite)


def charger_url(base_url: str, public_id: str) -> str:
    return f"{base_url.rstrip('/')}/c/{public_id}"


def charger_qr(args: argparse.Namespace) -> int:
    row = run_with_connection(args.settings, lambda conn: charge_boxes.get_charge_box(conn, args.charge_box_id))
    if row is None:
        raise CommandError(f"no charger {args.charge_box_id}")
    url = charger_url(args.settings.CUSTOMER_BASE_URL, row["public_id"])
    # Error correction M survives a scuffed sticker; the URL is short enough to stay small.
    qr = segno.make(url, error="m", micro=False)
    if args.png or args.svg:
        target: Path = args.png or args.svg
        try:
            if args.png:
                qr.save(target, kind="png", scale=10, border=4)
            else:
                qr.save(target, kind="svg", scale=10, border=4, title=f"Charger {row['charge_box_id']}")
        except OSError as exc:
            raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
        print(f"wrote {target} for {url}")
        return 0
    qr.terminal(out=sys.stdout, compact=True)
    print(url)
    return 0


def customer_invite(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions  # imported here: see polaris.cli.admin

    link = run_action(
        args.settings, lambda conn: actions.invite_customer(conn, args.settings, actions.Actor.shell(), args.email)
    )
    print(f"invitation for {link['email']} queued (valid until {link['expires_at']:%Y-%m-%d %H:%M} UTC)")
    if not args.settings.email_worker_enabled:
        print("CF_EMAIL_WORKER_URL is unset: the mail stays in the outbox; see `polaris admin outbox`")
    return 0
