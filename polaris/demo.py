"""Demo data for `polaris up`: an admin, three chargers, two customers with cards."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from polaris.db.repos import charge_boxes, customers, id_tags, users
from polaris.keys import generate_password, hash_password

ADMIN_EMAIL = "admin@example.com"
CHARGER_PREFIX = "SIM-"
CHARGER_COUNT = 3
CUSTOMERS = [
    ("alice@example.com", "Alice Example", "sub_demo_alice", "DEMOTAG0001"),
    ("bob@example.com", "Bob Example", "sub_demo_bob", "DEMOTAG0002"),
]


@dataclass
class DemoCredentials:
    admin_email: str
    admin_password: str
    charger_password: str
    charger_prefix: str = CHARGER_PREFIX
    charger_count: int = CHARGER_COUNT
    # Every demo customer's card, one per simulated charger in turn (older data dirs saved one).
    sim_id_tag: str = ",".join(c[3] for c in CUSTOMERS)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)

    @classmethod
    def load(cls, path: Path) -> DemoCredentials | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def charger_ids(prefix: str = CHARGER_PREFIX, count: int = CHARGER_COUNT) -> list[str]:
    """The simulator's naming: PREFIX + 4-digit k from 0001."""
    return [f"{prefix}{k:04d}" for k in range(1, count + 1)]


async def is_seeded(conn: asyncpg.Connection) -> bool:
    return await users.get_user_by_email(conn, ADMIN_EMAIL) is not None


async def seed(conn: asyncpg.Connection) -> DemoCredentials:
    """Create the demo data in one transaction; return the generated secrets."""
    creds = DemoCredentials(
        admin_email=ADMIN_EMAIL,
        admin_password=generate_password(),
        charger_password=generate_password(),
    )
    async with conn.transaction():
        await users.add_user(
            conn, ADMIN_EMAIL, "admin", password_hash=hash_password(creds.admin_password), name="Demo Admin"
        )
        await charge_boxes.add_charge_boxes(
            conn,
            charger_ids(),
            creds.charger_password,
            description="Simulated charger",
            site_name="Demo depot",
            site_address="1 Example Street",
        )
        for email, name, sub, tag in CUSTOMERS:
            await customers.add_customer(conn, email, name=name, lago_subscription_id=sub)
            await id_tags.add_id_tag(conn, tag, customer_email=email, label="Demo card")
    return creds


DEMO_SITE = "Demo depot"
DEMO_SITE_LIMIT_AMPS = 40.0  # under the three chargers' 3 x 32 A: load management has work to do


async def ensure_site_limit(conn: asyncpg.Connection) -> bool:
    """The demo site gets its grid limit (40 A per phase, 3 phases) unless it has one; True when set now.

    Run at every `polaris up`, so a demo seeded before load management existed shows it too.
    """
    from polaris.db.repos import sites  # only `polaris up` needs it

    site = await sites.get_site(conn, DEMO_SITE)
    if site is None or site["limit_amps"] is not None or site["limit_kw"] is not None:
        return False
    await sites.set_site_limits(conn, DEMO_SITE, {"limit_amps": DEMO_SITE_LIMIT_AMPS, "phases": 3})
    return True

