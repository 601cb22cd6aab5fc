"""Who is making a request: sessions (cookie), bearer tokens, roles.

The auth middleware puts an `AuthUser` in `request["user"]` (or None) for every request;
views and other modules (push, SSE) read it from there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuthUser:
    """The signed-in person. `customer_id` is set for customers only."""

    id: int
    email: str
    role: str
    customer_id: int | None = None

    @property
    def is_staff(self) -> bool:
        """Admins and operators (the admin API)."""
        return self.role in ("admin", "operator")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


__all__ = ["AuthUser"]
