"""What the portal pages and the customer JSON API both do: one code path for each capability.

Views (HTML) and API endpoints (JSON) are thin: they read input, call a function here and
present its result, so the two can never disagree. One module per area; everything a
view needs is importable from here.
"""

from __future__ import annotations

from polaris.customer_web.portal.account import (
    billing_view,
    delete_account,
    export_data,
    profile,
    request_email_change,
    update_profile,
)
from polaris.customer_web.portal.base import PortalError, pool_of, require_customer
from polaris.customer_web.portal.cards import (
    PairingResult,
    arm_link_pairing,
    arm_signin_pairing,
    link_pairing_result,
    list_cards,
    name_card,
    report_lost,
    signin_pairing_result,
)
from polaris.customer_web.portal.charging import (
    ChargerView,
    ConnectorView,
    Price,
    charger_view,
    price_for,
    start_charging,
    status_words,
)
from polaris.customer_web.portal.sessions import (
    SessionOut,
    list_sessions,
    session_chart_points,
    session_view,
    sessions_csv,
    stop_charging,
)
from polaris.customer_web.portal.signin import (
    consume_link,
    invite,
    issue_app_token,
    link_url,
    peek_link,
    request_link,
    sign_out_everywhere,
    start_browser_session,
)
from polaris.customer_web.strings import text
from polaris.services import appkeys
from polaris.services.errors import ApiError

__all__ = [
    "ApiError", "ChargerView", "ConnectorView", "PairingResult", "PortalError", "Price", "SessionOut",
    "appkeys", "arm_link_pairing", "arm_signin_pairing", "billing_view", "charger_view", "consume_link",
    "delete_account", "export_data", "invite", "issue_app_token", "link_pairing_result", "link_url",
    "list_cards", "list_sessions", "name_card", "peek_link", "pool_of", "price_for", "profile",
    "report_lost", "request_email_change", "request_link", "require_customer", "session_chart_points",
    "session_view", "sessions_csv", "sign_out_everywhere", "signin_pairing_result", "start_browser_session",
    "start_charging", "status_words", "stop_charging", "text", "update_profile",
]
