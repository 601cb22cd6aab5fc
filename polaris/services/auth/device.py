"""Device login for the terminal console (RFC 8628 style), for admins who sign in by OIDC.

The console asks for a code (POST /auth/device), shows the user code and the URL, and
polls (POST /auth/device/token). The admin opens the URL in a browser, signs in (OIDC or
an existing session), checks the code and approves; the next poll returns a bearer token.
"""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import urlencode

from aiohttp import web
from pydantic import Field

from polaris.db.repos import audit, logins
from polaris.db.repos import sessions as sessions_repo
from polaris.services import appkeys
from polaris.services.auth.middleware import AUTH_VIA, SESSION
from polaris.services.auth.oidc import login_url, page
from polaris.services.auth.views import IssuedToken, TokenInfo, UserOut, client_ip
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "auth"
LIFETIME = timedelta(minutes=10)
INTERVAL = 5
VERIFY_PATH = "/api/admin/v1/auth/device/verify"


class DeviceStart(Model):
    client_name: str = Field("terminal console", min_length=1, max_length=100)


class DeviceAuthorization(Out):
    device_code: str = Field(description="secret: the console polls with it")
    user_code: str = Field(description="shown to the person, who checks it in the browser")
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int = Field(description="seconds between polls")


class DevicePoll(Model):
    device_code: str = Field(min_length=10, max_length=200)


@endpoint(
    "POST", "/api/admin/v1/auth/device", summary="Start a device login (console shows a code and URL)",
    tag=TAG, roles=None, body=DeviceStart, response=DeviceAuthorization, status=201,
)
async def start_device_login(request: web.Request, call: Call) -> DeviceAuthorization:
    settings = request.app[appkeys.SETTINGS]
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        device_code, row = await logins.create_device_code(conn, call.body.client_name, LIFETIME)
    uri = settings.ADMIN_BASE_URL.rstrip("/") + VERIFY_PATH
    return DeviceAuthorization(
        device_code=device_code,
        user_code=row["user_code"],
        verification_uri=uri,
        verification_uri_complete=uri + "?" + urlencode({"user_code": row["user_code"]}),
        expires_in=int(LIFETIME.total_seconds()),
        interval=INTERVAL,
    )


@endpoint(
    "POST", "/api/admin/v1/auth/device/token", summary="Poll a device login; the token once approved",
    tag=TAG, roles=None, body=DevicePoll, response=IssuedToken,
    description="400 with error authorization_pending (keep polling), slow_down (poll less often), "
    "access_denied, expired_token or invalid_grant (unknown code).",
)
async def poll_device_login(request: web.Request, call: Call) -> IssuedToken:
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        # The poll time is kept even when the answer is an error (it drives slow_down), so
        # the transaction ends before any error is raised.
        async with conn.transaction():
            row = await logins.poll_device_code(conn, call.body.device_code)
            problem = _poll_problem(row, await conn.fetchval("SELECT now()"))
            user = None
            if problem is None:
                user = await conn.fetchrow(
                    "SELECT id, email, role, active FROM app.users WHERE id = $1", row["approved_by"]
                )
                if user is None or not user["active"] or user["role"] not in ("admin", "operator"):
                    problem = ApiError(400, "access_denied", "the approving account cannot sign in")
            if problem is None:
                token, info = await sessions_repo.create_api_token(
                    conn, user["id"], name=row["client_name"], method="device"
                )
                await audit.record(
                    conn, actor_user_id=user["id"], actor_email=user["email"], action="token.create",
                    target_type="api_token", target_id=info["id"],
                    after={"name": info["name"], "method": "device", "token_prefix": info["token_prefix"]},
                    ip=client_ip(request),
                )
    if problem is not None:
        raise problem
    return IssuedToken(
        token=token,
        info=TokenInfo(**dict(info), user_email=user["email"]),
        user=UserOut(id=user["id"], email=user["email"], role=user["role"]),
    )


def _poll_problem(row, now) -> ApiError | None:
    if row is None:
        return ApiError(400, "invalid_grant", "unknown device code")
    if row["expired"] or row["status"] == "consumed":
        return ApiError(400, "expired_token", "this device login expired or was used; start again")
    if row["status"] == "denied":
        return ApiError(400, "access_denied", "the sign-in was refused in the browser")
    if row["status"] == "pending":
        prev = row["previous_poll"]
        if prev is not None and now - prev < timedelta(seconds=INTERVAL - 1):
            return ApiError(400, "slow_down", f"poll at most every {INTERVAL} seconds")
        return ApiError(400, "authorization_pending", "waiting for approval in the browser")
    return None


def _signed_in_staff(request: web.Request):
    user = request.get("user")
    if user is None or not user.is_staff or request.get(AUTH_VIA) != "cookie":
        return None
    return user


async def verify_page(request: web.Request) -> web.StreamResponse:
    """The browser step: check the code and approve or deny."""
    code = request.query.get("user_code", "")[:20]
    user = _signed_in_staff(request)
    if user is None:
        if request.app.get(appkeys.OIDC) is not None:
            here = VERIFY_PATH + ("?" + urlencode({"user_code": code}) if code else "")
            raise web.HTTPFound(login_url(here))
        return page(401, "Sign in first", "Sign in to the admin site in this browser, then open this link again.")
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        row = await logins.get_device_code_by_user_code(conn, code) if code else None
    if row is None or row["status"] != "pending":
        form = (
            f"<form method=get action='{VERIFY_PATH}'><label>Code <input name=user_code "
            "autocomplete=off autofocus></label> <button>Continue</button></form>"
        )
        return page(200 if not code else 404, "Approve a console sign-in",
                    "Enter the code your console shows." if not code else "That code is unknown or expired.", form)
    csrf = request[SESSION]["csrf_token"]
    form = (
        f"<form method=post action='{VERIFY_PATH}'>"
        f"<input type=hidden name=csrf_token value='{html.escape(csrf)}'>"
        f"<input type=hidden name=user_code value='{html.escape(row['user_code'])}'>"
        "<button name=decision value=approve>Approve</button> "
        "<button name=decision value=deny>Deny</button></form>"
    )
    return page(
        200,
        "Approve a console sign-in",
        f"{row['client_name']} asks to act as {user.email} ({user.role}). "
        f"Approve only if your console shows the code {row['user_code']}.",
        form,
    )


async def verify_submit(request: web.Request) -> web.StreamResponse:
    user = _signed_in_staff(request)
    if user is None:
        return page(401, "Sign in first", "Your browser session expired; open the link again.")
    form = await request.post()
    code, decision = str(form.get("user_code", ""))[:20], form.get("decision")
    if decision not in ("approve", "deny"):
        return page(400, "Nothing done", "Choose approve or deny.")
    async with request.app[appkeys.PG_POOL].acquire() as conn, conn.transaction():
        row = await logins.get_device_code_by_user_code(conn, code)
        decided = await logins.decide_device_code(conn, row["id"], user.id, decision == "approve") if row else None
        if decided is None:
            return page(404, "Nothing done", "That code is unknown, expired or already decided.")
        await audit.record(
            conn, actor_user_id=user.id, actor_email=user.email,
            action="device_login." + ("approve" if decision == "approve" else "deny"),
            target_type="device_login", target_id=decided["id"],
            after={"client_name": decided["client_name"], "user_code": decided["user_code"]},
            ip=client_ip(request),
        )
    if decision == "approve":
        return page(200, "Approved", "Your console is signed in. You can close this window.")
    return page(200, "Denied", "The console sign-in was refused.")


def setup(app: web.Application) -> None:
    add_endpoints(app, start_device_login, poll_device_login)
    app.router.add_get(VERIFY_PATH, verify_page, name="device_verify")
    app.router.add_post(VERIFY_PATH, verify_submit, name="device_verify_submit")
