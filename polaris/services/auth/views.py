"""Sign-in endpoints of the admin API: password login, session, bearer tokens."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import Field

from polaris.db.repos import audit
from polaris.db.repos import sessions as sessions_repo
from polaris.forwarded import client_ip as forwarded_client_ip
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.auth.middleware import (
    AUTH_ID,
    AUTH_VIA,
    SESSION,
    clear_session_cookie,
    set_session_cookie,
)
from polaris.services.auth.passwords import authenticate
from polaris.services.errors import ApiError
from polaris.services.openapi import STAFF, Call, Model, Out, add_endpoints, endpoint

TAG = "auth"


def client_ip(request: web.Request) -> str | None:
    """The caller's address: X-Forwarded-For is believed only from TRUSTED_PROXIES (polaris.forwarded)."""
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
    return forwarded_client_ip(request.remote, forwarded, request.config_dict[appkeys.SETTINGS].trusted_proxies)


class LoginBody(Model):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class TokenBody(LoginBody):
    name: str = Field("terminal console", min_length=1, max_length=100, description="shown in token lists")


class UserOut(Out):
    id: int
    email: str
    role: str
    customer_id: int | None = None

    @classmethod
    def of(cls, user: AuthUser) -> UserOut:
        return cls(id=user.id, email=user.email, role=user.role, customer_id=user.customer_id)


class SessionOut(Out):
    user: UserOut
    via: str = Field(description="cookie or bearer")
    csrf_token: str | None = Field(None, description="send as X-CSRF-Token on cookie-authenticated writes")


class TokenInfo(Out):
    id: int
    name: str
    token_prefix: str
    method: str
    user_id: int
    user_email: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedToken(Out):
    token: str = Field(description="shown once; send as Authorization: Bearer <token>")
    info: TokenInfo
    user: UserOut


class TokenList(Out):
    items: list[TokenInfo]


class TokenListQuery(Model):
    all: bool = Field(False, description="admins: every user's tokens")
    include_revoked: bool = False


class TokenParams(Model):
    token_id: int = Field(ge=1, le=2**63 - 1)


def _user_of(row) -> AuthUser:
    return AuthUser(id=row["id"], email=row["email"], role=row["role"], customer_id=None)


@endpoint(
    "POST",
    "/api/admin/v1/auth/login",
    summary="Sign in with email and password (sets the session cookie)",
    tag=TAG,
    roles=None,
    body=LoginBody,
    response=SessionOut,
    errors=(401, 429),
)
async def login(request: web.Request, call: Call) -> web.Response:
    pool = request.app[appkeys.PG_POOL]
    ip = client_ip(request)
    async with pool.acquire() as conn:
        row = await authenticate(conn, call.body.email, call.body.password, ip)
        token, session = await sessions_repo.create_session(
            conn, row["id"], method="password", ip=ip, user_agent=request.headers.get("User-Agent")
        )
    out = SessionOut(user=UserOut.of(_user_of(row)), via="cookie", csrf_token=session["csrf_token"])
    response = web.json_response(out.model_dump(mode="json"))
    set_session_cookie(response, request, token)
    return response


@endpoint(
    "POST",
    "/api/admin/v1/auth/logout",
    summary="Sign out: ends the session, or revokes the bearer token used",
    tag=TAG,
    roles=None,
    status=204,
)
async def logout(request: web.Request, call: Call) -> web.Response:
    pool = request.app[appkeys.PG_POOL]
    async with pool.acquire() as conn:
        if request.get(AUTH_VIA) == "cookie":
            await sessions_repo.delete_session(conn, request[AUTH_ID])
        elif request.get(AUTH_VIA) == "bearer":
            await sessions_repo.revoke_api_token(conn, request[AUTH_ID])
    response = web.Response(status=204)
    clear_session_cookie(response, request)
    return response


@endpoint(
    "GET",
    "/api/admin/v1/auth/session",
    summary="Who am I: the signed-in user and the CSRF token of the session",
    tag=TAG,
    response=SessionOut,
)
async def current_session(request: web.Request, call: Call) -> SessionOut:
    session = request.get(SESSION)
    return SessionOut(
        user=UserOut.of(call.user),
        via=request[AUTH_VIA],
        csrf_token=session["csrf_token"] if session is not None else None,
    )


@endpoint(
    "POST",
    "/api/admin/v1/auth/token",
    summary="Exchange email and password for a bearer token (terminal console)",
    tag=TAG,
    roles=None,
    body=TokenBody,
    response=IssuedToken,
    status=201,
    errors=(401, 429),
)
async def issue_token(request: web.Request, call: Call) -> IssuedToken:
    pool = request.app[appkeys.PG_POOL]
    ip = client_ip(request)
    async with pool.acquire() as conn:
        row = await authenticate(conn, call.body.email, call.body.password, ip)
        async with conn.transaction():
            token, info = await sessions_repo.create_api_token(
                conn, row["id"], name=call.body.name, method="password"
            )
            await audit.record(
                conn,
                actor_user_id=row["id"],
                actor_email=row["email"],
                action="token.create",
                target_type="api_token",
                target_id=info["id"],
                after={"name": info["name"], "method": "password", "token_prefix": info["token_prefix"]},
                ip=ip,
            )
    return IssuedToken(
        token=token,
        info=TokenInfo(**dict(info), user_email=row["email"]),
        user=UserOut.of(_user_of(row)),
    )


@endpoint(
    "GET",
    "/api/admin/v1/auth/tokens",
    summary="List bearer tokens (yours; admins may ask for all)",
    tag=TAG,
    query=TokenListQuery,
    response=TokenList,
)
async def list_tokens(request: web.Request, call: Call) -> TokenList:
    if call.query.all and not call.user.is_admin:
        raise ApiError(403, "forbidden", "only admins can list every user's tokens")
    pool = request.app[appkeys.PG_POOL]
    async with pool.acquire() as conn:
        rows = await sessions_repo.list_api_tokens(
            conn,
            user_id=None if call.query.all else call.user.id,
            include_revoked=call.query.include_revoked,
        )
    return TokenList(items=[TokenInfo(**dict(r)) for r in rows])


@endpoint(
    "DELETE",
    "/api/admin/v1/auth/tokens/{token_id}",
    summary="Revoke a bearer token (yours; admins: anyone's)",
    tag=TAG,
    params=TokenParams,
    response=TokenInfo,
)
async def revoke_token(request: web.Request, call: Call) -> TokenInfo:
    pool = request.app[appkeys.PG_POOL]
    async with pool.acquire() as conn:
        existing = await sessions_repo.get_api_token_by_id(conn, call.params.token_id)
        # Another user's token is "not found" for non-admins: its existence is not theirs to know.
        if existing is None or (existing["user_id"] != call.user.id and not call.user.is_admin):
            raise ApiError(404, "not_found", f"no API token {call.params.token_id}")
        async with conn.transaction():
            row = await sessions_repo.revoke_api_token(conn, call.params.token_id)
            await audit.record(
                conn,
                actor_user_id=call.user.id,
                actor_email=call.user.email,
                action="token.revoke",
                target_type="api_token",
                target_id=row["id"],
                before={"revoked_at": existing["revoked_at"]},
                after={"revoked_at": row["revoked_at"], "user_email": row["user_email"]},
                ip=client_ip(request),
            )
    return TokenInfo(**dict(row))


def setup(app: web.Application) -> None:
    """Password sign-in, the session and bearer tokens (the app factory wires the device,
    OIDC and password-reset modules beside this one)."""
    add_endpoints(app, login, logout, current_session, issue_token, list_tokens, revoke_token)


__all__ = ["STAFF", "client_ip", "setup"]
