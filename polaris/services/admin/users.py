"""Admin and operator accounts (admins only): list, add, change role, deactivate, password."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from polaris.db.repos import users
from polaris.services.admin import actions
from polaris.services.admin.common import (
    IdParams,
    Page,
    PageQuery,
    actor_of,
    decode_cursor,
    page_of,
    pool,
)
from polaris.services.errors import ApiError
from polaris.services.openapi import ADMIN, Call, Model, Out, add_endpoints, endpoint

TAG = "users"
BASE = "/api/admin/v1/users"


class UserOut(Out):
    id: int
    email: str
    role: str
    name: str | None
    active: bool
    has_password: bool = Field(description="false: signs in by OIDC (or magic link) only")
    oidc_linked: bool = False
    created_at: datetime
    last_login_at: datetime | None


class UserListQuery(PageQuery):
    role: Literal["admin", "operator", "customer"] | None = None
    q: str | None = Field(None, max_length=200)
    active: bool | None = None


class UserCreate(Model):
    email: str = Field(min_length=3, max_length=254)
    role: Literal["admin", "operator"]
    name: str | None = Field(None, max_length=200)
    password: str | None = Field(
        None, min_length=12, max_length=1024, description="omit for people who sign in by OIDC only"
    )


class UserPatch(Model):
    role: Literal["admin", "operator"] | None = None
    name: str | None = Field(None, max_length=200)
    active: bool | None = Field(None, description="false signs the person out everywhere")


class PasswordBody(Model):
    password: str | None = Field(
        min_length=12, max_length=1024, description="null removes the password (OIDC-only sign-in)"
    )


UserPage = Page[UserOut]


def user_out(row) -> UserOut:
    return UserOut.model_validate({**dict(row), "oidc_linked": bool(row["oidc_subject"])})


@endpoint("GET", BASE, summary="List users", tag=TAG, roles=ADMIN, query=UserListQuery, response=UserPage)
async def list_users(request: web.Request, call: Call) -> UserPage:
    q = call.query
    after = decode_cursor(q.cursor, int)
    async with pool(request).acquire() as conn:
        rows = await users.list_users_page(
            conn, limit=q.limit + 1, after_id=after[0] if after else None, role=q.role, q=q.q, active=q.active
        )
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    return UserPage(items=[user_out(r) for r in rows], next_cursor=cursor)


@endpoint("GET", BASE + "/{id}", summary="One user", tag=TAG, roles=ADMIN, params=IdParams, response=UserOut)
async def get_user(request: web.Request, call: Call) -> UserOut:
    async with pool(request).acquire() as conn:
        row = await users.get_user(conn, call.params.id)
    if row is None:
        raise ApiError(404, "not_found", f"no user {call.params.id}")
    return user_out(row)


@endpoint(
    "POST", BASE, summary="Add an admin or operator", tag=TAG, roles=ADMIN,
    body=UserCreate, response=UserOut, status=201, errors=(409,),
)
async def create_user(request: web.Request, call: Call) -> UserOut:
    b = call.body
    async with pool(request).acquire() as conn:
        row = await actions.add_user(conn, actor_of(request, call), b.email, b.role, password=b.password, name=b.name)
    return user_out(row)


@endpoint(
    "PATCH", BASE + "/{id}", summary="Change a user's role or name, or deactivate them", tag=TAG,
    roles=ADMIN, params=IdParams, body=UserPatch, response=UserOut, errors=(409,),
)
async def edit_user(request: web.Request, call: Call) -> UserOut:
    async with pool(request).acquire() as conn:
        after = await actions.edit_user(conn, actor_of(request, call), call.params.id,
                                        call.body.model_dump(exclude_unset=True))
    return user_out(after)


@endpoint(
    "PUT", BASE + "/{id}/password", summary="Set or remove a user's password (signs them out)", tag=TAG,
    roles=ADMIN, params=IdParams, body=PasswordBody, status=204,
)
async def set_user_password(request: web.Request, call: Call) -> None:
    async with pool(request).acquire() as conn:
        await actions.set_user_password(conn, actor_of(request, call), call.params.id, call.body.password)


def setup(app: web.Application) -> None:
    add_endpoints(app, list_users, create_user, get_user, edit_user, set_user_password)
