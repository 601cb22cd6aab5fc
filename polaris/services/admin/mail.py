"""Mail the admin API sends: customer invites (a 24 h sign-in link).

The portal owns sign-in links and their mail (polaris.customer_web.portal.invite, which
queues the mail in the email outbox inside the caller's transaction); the admin API calls
it. A build without the portal creates the customer but reports that no invite went out.
"""

from __future__ import annotations

import importlib
import importlib.util

import asyncpg

from polaris.config import Settings
from polaris.logs import get_logger

log = get_logger(__name__)


def _portal():
    name = "polaris.customer_web.portal"
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


async def queue_invite(conn: asyncpg.Connection, settings: Settings, *, email: str) -> bool:
    """Queue the invite mail for an existing customer; True when a mail was queued."""
    portal = _portal()
    if portal is None or not hasattr(portal, "invite"):
        log.warning("invite not mailed: the customer portal is not part of this build", email=email)
        return False
    await portal.invite(conn, settings, email)
    return True
