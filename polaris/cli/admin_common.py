"""What the `polaris admin` command modules share: running an action on one connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from polaris.cli.database import run_with_connection
from polaris.cli.errors import CommandError
from polaris.config import Settings

T = TypeVar("T")


def run_action(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """`run_with_connection` for an admin action: its refusals (ApiError) become one line too,
    like the database's and the repositories' errors."""
    from polaris.services.errors import ApiError  # imported here: see polaris.cli.admin

    try:
        return run_with_connection(settings, work)
    except ApiError as exc:
        raise CommandError(exc.message) from None
