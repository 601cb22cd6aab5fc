"""Who acts, and the audit entry every change writes inside its own transaction."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

import asyncpg

from polaris.db.repos import audit
from polaris.services.errors import ApiError


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, as the audit log records it.

    The admin API acts as the signed-in person (their user id, email and address). The
    shell (`polaris admin ...`) has no account: it is recorded as `cli:<OS user>`, with
    no user id and no address; the command also passes that name on as `requested_by`
    (a sync pin's `pinned_by`, for instance). `role` is the person's role (admin,
    operator); None for the shell, which may do what an admin may.
    """

    user_id: int | None
    email: str
    ip: str | None = None
    role: str | None = None

    @classmethod
    def shell(cls) -> Actor:
        """`polaris admin ...` run by this OS user."""
        return cls(user_id=None, email=f"cli:{_os_user()}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "unknown"


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: Any,
    *,
    before: Any = None,
    after: Any = None,
) -> None:
    """One audit entry for `actor`'s change (call inside the change's transaction)."""
    await audit.record(
        conn,
        actor_user_id=actor.user_id,
        actor_email=actor.email,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
        ip=actor.ip,
    )


def changed(before: Any, after: Any) -> tuple[dict, dict]:
    """Only the fields that differ, for a readable audit entry."""
    b, a = dict(before), dict(after)
    keys = [k for k in a if k in b and a[k] != b[k] and k not in ("updated_at", "last_seen_at")]
    return {k: b[k] for k in keys}, {k: a[k] for k in keys}


def refuse_nulls(changes: dict, *keys: str) -> None:
    """A PATCH may leave these fields out, but not set them to null."""
    for key in keys:
        if key in changes and changes[key] is None:
            raise ApiError(400, "invalid_input", f"{key} cannot be null")
