"""Admin and operator accounts (admins only): list, add, change role, deactivate, password."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from polaris.db.repos import sessions, users
from polaris.keys import hash_password
from polaris.services.admin.common import (
    IdParams,
    Page,
    PageQuery,
    changed,
    decode_cursor,
    page_of,
    pool,
    record_audit,
)
from polaris.services.auth.passwords import check_new_password
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
    hashed = None
    if b.password is not None:
        check_new_password(b.password)
        hashed = await asyncio.to_thread(hash_password, b.password)
    async with pool(request).acquire() as conn, conn.transaction():
        created = await users.add_user(conn, b.email, b.role, password_hash=hashed, name=b.name)
        row = await users.get_user(conn, created["id"])
        await record_audit(
            conn, request, call, "user.create", "user", row["id"],
            after={"email": row["email"], "role": row["role"], "name": row["name"], "has_password": hashed is not None},
        )
    return user_out(row)


@endpoint(
    "PATCH", BASE + "/{id}", summary="Change a user's role or name, or deactivate them", tag=TAG,
    roles=ADMIN, params=IdParams, body=UserPatch, response=UserOut, errors=(409,),
)
async def edit_user(request: web.Request, call: Call) -> UserOut:
    changes = call.body.model_dump(exclude_unset=True)
    for key in ("role", "active"):
        if key in changes and changes[key] is None:
            raise ApiError(400, "invalid_input", f"{key} cannot be null")
    async with pool(request).acquire() as conn, conn.transaction():
        target = await users.get_user(conn, call.params.id)
        if target is None:
            raise ApiError(404, "not_found", f"no user {call.params.id}")
        if target["role"] == "customer":
            raise ApiError(409, "is_customer", "customers are managed under /customers")
        demoting = changes.get("role") == "operator" or changes.get("active") is False
        if demoting and target["role"] == "admin" and target["active"] and await users.count_active_admins(conn) <= 1:
            raise ApiError(409, "last_admin", "this is the last active admin; add another admin first")
        before, after = await users.update_user(conn, call.params.id, changes)
        if changes.get("active") is False:
            await sessions.delete_user_sessions(conn, call.params.id)
            await sessions.revoke_user_tokens(conn, call.params.id)
        b, a = changed(before, after)
        if a:
            action = "user.deactivate" if a.get("active") is False else "user.edit"
            await record_audit(conn, request, call, action, "user", call.params.id, before=b, after=a)
    return user_out(after)


@endpoint(
    "PUT", BASE + "/{id}/password", summary="Set or remove a user's password (signs them out)", tag=TAG,
    roles=ADMIN, params=IdParams, body=PasswordBody, status=204,
)
async def set_user_password(request: web.Request, call: Call) -> None:
    password = call.body.password
    hashed = None
    if password is not None:
        check_new_password(password)
        hashed = await asyncio.to_thread(hash_password, password)
    async with pool(request).acquire() as conn, conn.transaction():
        target = await users.get_user(conn, call.params.id)
        if target is None or target["role"] == "customer":
            raise ApiError(404, "not_found", f"no admin or operator {call.params.id}")
        await users.set_password_hash_by_id(conn, call.params.id, hashed)
        await sessions.delete_user_sessions(conn, call.params.id)
        await record_audit(
            conn, request, call, "user.password", "user", call.params.id,
            after={"password": "set" if hashed else "removed"},
        )


def setup(app: web.Application) -> None:
    add_endpoints(app, list_users, create_user, get_user, edit_user, set_user_password)
