"""`polaris admin ...`: manage users, customers, id tags and chargers from the shell.

Needs only the database. Every change is an action of polaris.services.admin.actions, the
same the admin API runs: its transaction, its audit entry and its mail. The audit log
records the shell as `cli:<OS user>` (no user id, no address). What needs a charger
(ClearCache after blocking a card, OCPP operations) is the admin API's.

The actions are imported inside the commands that run them, not at module level: they
bring the web stack (aiohttp, httpx, jinja2), which every other `polaris` command, and
`polaris --help`, would otherwise load for nothing (about half a second).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from polaris.cli import admin_outbox, admin_qr
from polaris.cli.admin_common import run_action
from polaris.cli.database import run_with_connection
from polaris.cli.errors import CommandError
from polaris.db.errors import NotFound
from polaris.db.repos import charge_boxes, customers, id_tags, users


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser(
        "admin",
        help="manage users, customers, id tags and chargers",
        description="Administrative tasks against the database (needs only DATABASE_URL).",
    )
    groups = admin.add_subparsers(dest="admin_group", metavar="AREA", required=True)

    # users
    user = groups.add_parser("user", help="admin and operator accounts").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = user.add_parser("add", help="add a user who signs in with a password")
    p.add_argument("email")
    p.add_argument("--role", required=True, choices=["admin", "operator"])
    p.add_argument("--password", required=True, help="at least 12 characters")
    p.add_argument("--name")
    p.set_defaults(func=user_add)
    p = user.add_parser("set-password", help="reset a user's password")
    p.add_argument("email")
    p.add_argument("--password", required=True, help="at least 12 characters")
    p.set_defaults(func=user_set_password)
    p = user.add_parser("list", help="list users")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=user_list)

    # customers
    customer = groups.add_parser("customer", help="customers and their Lago subscription").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = customer.add_parser("add", help="add a customer (they sign in by magic link)")
    p.add_argument("email")
    p.add_argument("--name")
    p.add_argument("--subscription", metavar="LAGO_EXTERNAL_SUBSCRIPTION_ID",
                   help="the Lago subscription their kWh are billed to")
    p.set_defaults(func=customer_add)
    p = customer.add_parser("list", help="list customers")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=customer_list)

    # id tags
    tag = groups.add_parser("tag", help="RFID cards / OCPP id tags").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = tag.add_parser("add", help="register an id tag for a customer")
    p.add_argument("id_tag", metavar="ID_TAG")
    p.add_argument("--customer", required=True, metavar="EMAIL")
    p.add_argument("--label", help="a name for the card, e.g. 'blue keyfob'")
    p.set_defaults(func=tag_add)
    p = tag.add_parser("block", help="block an id tag (chargers refuse it)")
    p.add_argument("id_tag", metavar="ID_TAG")
    p.set_defaults(func=tag_block, blocked=True)
    p = tag.add_parser("unblock", help="unblock an id tag")
    p.add_argument("id_tag", metavar="ID_TAG")
    p.set_defaults(func=tag_block, blocked=False)
    p = tag.add_parser("list", help="list id tags")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=tag_list)

    # chargers
    charger = groups.add_parser("charger", help="charge boxes").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = charger.add_parser("add", help="register one or more chargers with the same password (or none)")
    p.add_argument("charge_box_ids", nargs="+", metavar="CHARGE_BOX_ID")
    p.add_argument("--password", help="the chargers' key: 16 to 40 characters (security profiles 1 and 2)")
    p.add_argument("--security-profile", type=int, choices=[0, 1, 2], default=None,
                   help="0: no password, admitted by id alone (SteVe's default; only at OCPP_PROFILE0_PATHS); "
                        "1: HTTP Basic (the default with --password); 2: HTTP Basic over TLS")
    p.add_argument("--public-id", help="the id in the charger's QR code, to keep a printed sticker working "
                                       "(one charger only)")
    p.add_argument("--description")
    p.add_argument("--site", help="site name (created if new)")
    p.add_argument("--address", help="site address")
    p.add_argument("--circuit", help="the site's circuit (breaker) the chargers hang off")
    p.add_argument("--min-amps", type=float, help="the chargers' lowest current per phase (load management)")
    p.add_argument("--max-amps", type=float, help="the chargers' highest current per phase (default 32)")
    p.set_defaults(func=charger_add)
    p = charger.add_parser("set-password", help="change a charger's key")
    p.add_argument("charge_box_id", metavar="CHARGE_BOX_ID")
    p.add_argument("--password", required=True, help="16 to 40 characters")
    p.set_defaults(func=charger_set_password)
    p = charger.add_parser("list", help="list chargers")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=charger_list)

    # sites (load management)
    site = groups.add_parser("site", help="sites and their grid limit (load management)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = site.add_parser("set", help="create a site or set its grid limit")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--limit-amps", type=float, help="the grid connection's limit per phase (A)")
    p.add_argument("--limit-kw", type=float, help="a limit on total power (kW)")
    p.add_argument("--phases", type=int, choices=[1, 3])
    p.add_argument("--margin-amps", type=float, help="kept free under the limit (A per phase)")
    p.add_argument("--policy", choices=["equal", "first_come"],
                   help="equal: every car the same share; first_come: earlier sessions first, all at least 6 A")
    p.add_argument("--address")
    p.set_defaults(func=site_set)
    p = site.add_parser("circuit", help="create or change a circuit (one breaker over some chargers)")
    p.add_argument("name", metavar="SITE")
    p.add_argument("circuit", metavar="CIRCUIT")
    p.add_argument("--limit-amps", type=float, required=True)
    p.add_argument("--parent", help="the circuit it sits under (default: the site)")
    p.set_defaults(func=site_circuit)
    p = site.add_parser("list", help="list sites with their limits and live load")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=site_list)

    # The QR code and invite commands join the charger and customer groups above.
    admin_qr.register_admin(groups)
    admin_outbox.register_admin(groups)


# ------------------------------------------------------------------ output


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def print_rows(rows: Sequence[Any], columns: Sequence[str], *, as_json: bool) -> None:
    """A table for people, or exactly one JSON document for scripts."""
    if as_json:
        doc = [{c: _jsonable(r[c]) for c in columns} for r in rows]
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not rows:
        print("(none)")
        return
    cells = [[("" if r[c] is None else _cell(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# ------------------------------------------------------------------ commands


def user_add(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    row = run_action(
        args.settings,
        lambda conn: actions.add_user(
            conn, actions.Actor.shell(), args.email, args.role, password=args.password, name=args.name
        ),
    )
    print(f"added {row['role']} {row['email']}")
    return 0


def user_set_password(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    async def work(conn) -> None:
        user = await users.get_user_by_email(conn, args.email)
        if user is None:
            raise NotFound(f"no user with email {args.email}")
        await actions.set_user_password(conn, actions.Actor.shell(), user["id"], args.password)

    run_action(args.settings, work)
    print(f"password changed for {args.email.strip().lower()}")
    return 0


def user_list(args: argparse.Namespace) -> int:
    rows = run_with_connection(args.settings, users.list_users)
    print_rows(rows, ["email", "role", "name", "active", "last_login_at"], as_json=args.json)
    return 0


def customer_add(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    row = run_action(
        args.settings,
        lambda conn: actions.create_customer(
            conn, args.settings, actions.Actor.shell(), args.email, name=args.name,
            lago_subscription_id=args.subscription, invite=False,
        ),
    )
    sub = f", Lago subscription {row['lago_subscription_id']}" if row["lago_subscription_id"] else ""
    print(f"added customer {row['email']}{sub}")
    return 0


def customer_list(args: argparse.Namespace) -> int:
    rows = run_with_connection(args.settings, customers.list_customers)
    print_rows(rows, ["email", "name", "lago_subscription_id", "active", "id_tags"], as_json=args.json)
    return 0


def tag_add(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    row = run_action(
        args.settings,
        lambda conn: actions.add_card(
            conn, actions.Actor.shell(), args.id_tag, customer_email=args.customer, label=args.label
        ),
    )
    print(f"added id tag {row['id_tag']} for {args.customer.strip().lower()}")
    return 0


def tag_block(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    edit = run_action(
        args.settings,
        lambda conn: actions.edit_card(conn, actions.Actor.shell(), args.id_tag, {"blocked": args.blocked}),
    )
    print(f"id tag {edit.card['id_tag']} {'blocked' if edit.card['blocked'] else 'unblocked'}")
    return 0


def tag_list(args: argparse.Namespace) -> int:
    rows = run_with_connection(args.settings, id_tags.list_id_tags)
    print_rows(
        rows, ["id_tag", "label", "customer_email", "blocked", "unknown", "last_seen_at"], as_json=args.json
    )
    return 0


def charger_add(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    profile = args.security_profile
    if profile is None:
        if args.password is None:
            raise CommandError("give --password PW, or --security-profile 0 for chargers without one")
        profile = 1
    rows = run_action(
        args.settings,
        lambda conn: actions.add_chargers(
            conn, actions.Actor.shell(), args.charge_box_ids, args.password,
            description=args.description, site_name=args.site, site_address=args.address,
            security_profile=profile, public_id=args.public_id,
        ),
    )
    for r in rows:
        print(f"added charger {r['charge_box_id']} (public id {r['public_id']}, security profile {profile})")
    load = {k: v for k, v in (("circuit", args.circuit), ("min_amps", args.min_amps), ("max_amps", args.max_amps))
            if v is not None}
    if load:
        for r in rows:
            run_action(args.settings, lambda conn, cid=r["charge_box_id"]: actions.set_charger_load(
                conn, actions.Actor.shell(), cid, load))
    return 0


def site_set(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    changes = {k: v for k in ("limit_amps", "limit_kw", "phases", "margin_amps", "policy")
               if (v := getattr(args, k)) is not None}
    after = run_action(args.settings, lambda conn: actions.set_site(
        conn, actions.Actor.shell(), args.name, changes, address=args.address))
    limit = f"{after['limit_amps']:g} A per phase" if after["limit_amps"] is not None else "no amp limit"
    kw = f", {after['limit_kw']:g} kW" if after["limit_kw"] is not None else ""
    print(f"site {after['name']}: {limit}{kw}, {after['phases']} phase(s), margin {after['margin_amps']:g} A, "
          f"policy {after['policy']}")
    return 0


def site_circuit(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    run_action(args.settings, lambda conn: actions.set_circuit(
        conn, actions.Actor.shell(), args.name, args.circuit, args.limit_amps, parent=args.parent))
    print(f"circuit {args.circuit} at site {args.name}: {args.limit_amps:g} A per phase")
    return 0


def site_list(args: argparse.Namespace) -> int:
    from polaris.db.repos import sites

    rows = run_with_connection(args.settings, sites.list_sites)
    print_rows(rows, ["name", "limit_amps", "limit_kw", "phases", "margin_amps", "policy", "chargers",
                      "drawn_amps", "over_since"], as_json=args.json)
    return 0


def charger_set_password(args: argparse.Namespace) -> int:
    from polaris.services.admin import actions

    run_action(
        args.settings,
        lambda conn: actions.set_charger_password(conn, actions.Actor.shell(), args.charge_box_id, args.password),
    )
    print(f"key changed for charger {args.charge_box_id}")
    return 0


def charger_list(args: argparse.Namespace) -> int:
    rows = run_with_connection(args.settings, charge_boxes.list_charge_boxes)
    print_rows(
        rows,
        [
            "charge_box_id",
            "public_id",
            "registration_status",
            "security_profile",
            "active",
            "connected",
            "vendor",
            "model",
            "site_name",
            "last_seen_at",
        ],
        as_json=args.json,
    )
    return 0
