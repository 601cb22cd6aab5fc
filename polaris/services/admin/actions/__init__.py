"""What an operator can change, written once for the admin API and for `polaris admin ...`.

The customer portal's pattern (polaris.customer_web.portal) on the admin side: each action
takes a connection (or the pool, when it waits on a charger), the `Actor` making the
change, and plain values. It opens its own transaction and writes the change, its audit
entry and any mail in it, so the HTTP views (polaris.services.admin.*) and the shell
commands (polaris.cli.admin*) only parse input and present the result. Refusals are
`ApiError`s or a repository's domain errors: the web's error middleware answers them, the
CLI prints their message. Reads stay with the views: they are one repository call each.

One module per area; everything a caller needs is importable from here.
"""

from __future__ import annotations

from polaris.services.admin.actions.base import Actor, changed, record
from polaris.services.admin.actions.billing import (
    pin_tier,
    request_sync,
    retry_refused,
    settle_anomaly,
)
from polaris.services.admin.actions.chargers import (
    KeyChange,
    OperationOutcome,
    add_chargers,
    edit_charger,
    rotate_charger_key,
    run_operation,
    set_charger_password,
)
from polaris.services.admin.actions.customers import create_customer, edit_customer, invite_customer
from polaris.services.admin.actions.id_tags import (
    CacheCleared,
    CardEdit,
    add_card,
    clear_caches,
    edit_card,
)
from polaris.services.admin.actions.permissions import admin_only, check_operation, required_role
from polaris.services.admin.actions.sites import set_charger_load, set_circuit, set_site
from polaris.services.admin.actions.transactions import force_close
from polaris.services.admin.actions.users import add_user, edit_user, set_user_password

__all__ = [
    "Actor", "CacheCleared", "CardEdit", "KeyChange", "OperationOutcome", "add_card", "add_chargers", "add_user",
    "admin_only", "changed", "check_operation", "clear_caches", "create_customer", "edit_card", "edit_charger",
    "edit_customer", "edit_user", "force_close", "invite_customer", "pin_tier", "record", "request_sync",
    "required_role", "retry_refused", "rotate_charger_key", "run_operation", "set_charger_password",
    "set_user_password", "settle_anomaly",
    "set_charger_load", "set_circuit", "set_site",
]
