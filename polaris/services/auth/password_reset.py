"""Admin password reset by email: ask (yourself, or an admin for you), open the link, choose.

The answer to "reset my password" never says whether the email belongs to an account.
Links work once, for 30 minutes; using one signs the person out everywhere.
"""

from __future__ import annotations

import asyncio
import html
from datetime import timedelta

from aiohttp import web
from pydantic import Field

from polaris.db.repos import audit, logins, password_resets, users
from polaris.db.repos import sessions as sessions_repo
from polaris.keys import hash_password
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth.oidc import page
from polaris.services.auth.passwords import PASSWORD_MIN, STAFF_ROLES
from polaris.services.auth.views import client_ip
from polaris.services.email import send_mail
from polaris.services.errors import ApiError
from polaris.services.openapi import ADMIN, Call, Model, Out, add_endpoints, endpoint

log = get_logger(__name__)
TAG = "auth"
LIFETIME = timedelta(minutes=30)
MAX_PER_HOUR = 3
REQUEST_PATH = "/api/admin/v1/auth/password-reset"
LINK_PREFIX = "/api/admin/v1/auth/password-reset/"


class ResetRequest(Model):
    email: str = Field(min_length=3, max_length=254)


class ResetQueued(Out):
    message: str


class UserIdParams(Model):
    id: int = Field(ge=1, le=2**63 - 1)


async def mail_reset_link(conn, request: web.Request, user, *, requested_by: str) -> bool:
    """Create a link and queue the admin-password-reset mail (in the caller's transaction)."""
    if await password_resets.recent_resets(conn, user["id"], timedelta(hours=1)) >= MAX_PER_HOUR:
        log.warning("password reset rate limited", user_id=user["id"])
        return False
    settings = request.app[appkeys.SETTINGS]
    lifetime = timedelta(seconds=settings.ADMIN_PASSWORD_RESET_TTL_SECONDS)  # default LIFETIME
    token = await password_resets.create_reset(conn, user["id"], lifetime=lifetime, requested_by=requested_by)
    link = settings.ADMIN_BASE_URL.rstrip("/") + LINK_PREFIX + token
    await send_mail(
        conn, "admin-password-reset", to=user["email"], link=link,
        expires_minutes=int(lifetime.total_seconds() // 60), name=user["name"],
    )
    return True


@endpoint(
    "POST", REQUEST_PATH, summary="Mail a password-reset link (the answer is the same for any email)",
    tag=TAG, roles=None, body=ResetRequest, response=ResetQueued, status=202,
)
async def request_reset(request: web.Request, call: Call) -> ResetQueued:
    async with request.app[appkeys.PG_POOL].acquire() as conn, conn.transaction():
        user = await users.get_user_by_email(conn, call.body.email)
        if user is not None and user["active"] and user["role"] in STAFF_ROLES:
            await mail_reset_link(conn, request, user, requested_by=user["email"])
    return ResetQueued(message="if an admin or operator account has this email, a reset link is on its way")


@endpoint(
    "POST", "/api/admin/v1/users/{id}/password-reset", summary="Mail a user a password-reset link",
    tag="users", roles=ADMIN, params=UserIdParams, response=ResetQueued, status=202, errors=(429,),
)
async def admin_reset(request: web.Request, call: Call) -> ResetQueued:
    async with request.app[appkeys.PG_POOL].acquire() as conn, conn.transaction():
        user = await users.get_user(conn, call.params.id)
        if user is None or user["role"] not in STAFF_ROLES:
            raise ApiError(404, "not_found", f"no admin or operator {call.params.id}")
        if not user["active"]:
            raise ApiError(409, "inactive", "reactivate the user first")
        if not await mail_reset_link(conn, request, user, requested_by=call.user.email):
            raise ApiError(429, "too_many_requests", f"at most {MAX_PER_HOUR} reset links per hour")
        await audit.record(
            conn, actor_user_id=call.user.id, actor_email=call.user.email, action="user.password_reset_mail",
            target_type="user", target_id=user["id"], after={"email": user["email"]}, ip=client_ip(request),
        )
    return ResetQueued(message=f"a reset link was mailed to {user['email']}")


def _form(token: str, error: str | None = None) -> str:
    note = f"<p style='color:#b00'>{html.escape(error)}</p>" if error else ""
    return (
        f"{note}<form method=post action='{LINK_PREFIX}{html.escape(token)}'>"
        f"<p><label>New password (at least {PASSWORD_MIN} characters)<br>"
        "<input type=password name=password autocomplete=new-password required></label></p>"
        "<p><label>Again<br><input type=password name=password2 autocomplete=new-password required></label></p>"
        "<button>Set password</button></form>"
    )


async def reset_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        reset = await password_resets.peek_reset(conn, token)
    if reset is None or not reset["active"]:
        return page(404, "Link expired", "This reset link expired or was used. Ask for a new one.")
    return page(200, "Choose a new password", f"For {reset['email']}.", _form(token))


async def reset_submit(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    form = await request.post()
    password, again = str(form.get("password", "")), str(form.get("password2", ""))
    if password != again:
        return page(400, "Choose a new password", "", _form(token, "The two passwords differ."))
    if not PASSWORD_MIN <= len(password) <= 1024:
        return page(400, "Choose a new password", "", _form(token, f"Use at least {PASSWORD_MIN} characters."))
    hashed = await asyncio.to_thread(hash_password, password)
    async with request.app[appkeys.PG_POOL].acquire() as conn, conn.transaction():
        reset = await password_resets.peek_reset(conn, token)
        if reset is None or not reset["active"] or not await password_resets.use_reset(conn, reset["id"]):
            return page(404, "Link expired", "This reset link expired or was used. Ask for a new one.")
        await users.set_password_hash_by_id(conn, reset["user_id"], hashed)
        await sessions_repo.delete_user_sessions(conn, reset["user_id"])
        # A success clears the lock-out count of this email.
        await logins.record_attempt(conn, reset["email"], client_ip(request), True)
        await audit.record(
            conn, actor_user_id=reset["user_id"], actor_email=reset["email"], action="user.password",
            target_type="user", target_id=reset["user_id"], after={"password": "reset by email link"},
            ip=client_ip(request),
        )
    return page(200, "Password changed", "Sign in with your new password.")


def setup(app: web.Application) -> None:
    add_endpoints(app, request_reset, admin_reset)
    app.router.add_get(LINK_PREFIX + "{token}", reset_page, name="password_reset_page")
    app.router.add_post(LINK_PREFIX + "{token}", reset_submit, name="password_reset_submit")
