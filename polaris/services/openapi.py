"""Documented endpoints and the OpenAPI 3.1 document generated from their pydantic models.

A view declares what it takes and returns with `@endpoint(...)`; the wrapper checks the
caller's role, validates the path, query and body (400 with the reason on bad input),
and serializes the answer. `openapi_document(app)` describes exactly those routes, with
paths absolute from the host root.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, get_origin

import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from polaris import __version__
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.auth.middleware import require_user
from polaris.services.errors import ApiError, describe_validation

STAFF = ("admin", "operator")
ADMIN = ("admin",)


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str
    message: str


class Model(BaseModel):
    """Base of request models: unknown fields are refused, so typos are noticed."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Base of response models: built from database rows, extra columns are dropped."""

    model_config = ConfigDict(extra="ignore")


@dataclass
class Call:
    """What a view receives besides the request."""

    user: AuthUser | None
    params: Any = None
    query: Any = None
    body: Any = None


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    roles: tuple[str, ...] | None
    params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    roles: tuple[str, ...] | None = STAFF,
    params: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    description: str | None = None,
):
    """Declare a documented view `async def view(request, call) -> model | dict | None`.

    `roles=None` makes it public (the view may still read `call.user`).
    """

    def wrap(fn: Callable[[web.Request, Call], Awaitable[Any]]):
        ep = Endpoint(
            method=method.upper(),
            path=path,
            handler=fn,
            summary=summary,
            tag=tag,
            roles=roles,
            params=params,
            query=query,
            body=body,
            response=response,
            status=status,
            errors=errors,
            description=description or (fn.__doc__ or "").strip() or None,
        )

        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            user = require_user(request, *roles) if roles is not None else request.get("user")
            call = Call(user=user)
            if params is not None:
                call.params = _validate(params, dict(request.match_info), status=404)
            if query is not None:
                call.query = _validate(query, _query_dict(request, query))
            if body is not None:
                call.body = await _read_body(request, body)
            result = await fn(request, call)
            if isinstance(result, web.StreamResponse):
                return result
            if status == 204 or result is None:
                return web.Response(status=204)
            if isinstance(result, BaseModel):
                # pydantic-core serializes straight to JSON bytes: several times faster
                # than dumping to Python objects and then json.dumps for long lists.
                return web.Response(
                    body=result.model_dump_json().encode(), status=status, content_type="application/json"
                )
            return web.json_response(_dump(result), status=status, dumps=_dumps)

        handler.endpoint = ep  # type: ignore[attr-defined]
        return handler

    return wrap


def add_endpoints(app: web.Application, *handlers: Any) -> None:
    """Route each decorated view and remember it for the OpenAPI document."""
    registry = app.setdefault(appkeys.ENDPOINTS, [])
    for h in handlers:
        ep: Endpoint = h.endpoint
        app.router.add_route(ep.method, _aiohttp_path(ep.path), h, name=h.__name__)
        registry.append(ep)


def _aiohttp_path(path: str) -> str:
    # Integer ids only match digits, so /chargers/abc is a plain 404 before any query runs.
    return path.replace("{id}", r"{id:\d+}").replace("{token_id}", r"{token_id:\d+}")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, list):
        return [_dump(r) for r in result]
    return result


def _validate(model: type[BaseModel], data: Any, *, status: int = 400) -> Any:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        if status == 404:
            raise ApiError(404, "not_found", f"no such resource ({describe_validation(exc)})") from None
        raise ApiError(400, "invalid_input", describe_validation(exc)) from None


def _query_dict(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in set(request.query.keys()):
        values = request.query.getall(key)
        info = model.model_fields.get(key)
        is_list = info is not None and _is_list(info.annotation)
        data[key] = values if is_list else values[-1]
    return data


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return any(get_origin(a) is list for a in getattr(annotation, "__args__", ()))


async def _read_body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "invalid_json", "this request needs a JSON body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    return _validate(model, data)


# ------------------------------------------------------------------ the document

ERROR_TEXT = {
    400: "Bad input (the message says which field and why)",
    401: "Not signed in",
    403: "Signed in without the needed role, or a missing CSRF token",
    404: "Not found",
    409: "Conflict with the current state",
    429: "Too many attempts; see Retry-After",
    502: "The OCPP server could not be reached",
    504: "The charger did not answer in time",
}


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every registered endpoint."""
    endpoints: list[Endpoint] = app.get(appkeys.ENDPOINTS, [])
    models: list[tuple[Any, str]] = [(ErrorBody, "serialization")]
    for ep in endpoints:
        if ep.body is not None:
            models.append((ep.body, "validation"))
        if isinstance(ep.response, type) and issubclass(ep.response, BaseModel):
            models.append((ep.response, "serialization"))
    keyed, top = models_json_schema(
        list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
    )
    schemas = top.get("$defs", {})

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": [ep.tag],
            "responses": {},
        }
        if ep.description:
            op["description"] = ep.description
        parameters = []
        if ep.params is not None:
            parameters += _parameters(ep.params, "path")
        if ep.query is not None:
            parameters += _parameters(ep.query, "query")
        if parameters:
            op["parameters"] = parameters
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keyed[(ep.body, "validation")]}},
            }
        if ep.status == 204:
            op["responses"]["204"] = {"description": "Done"}
        else:
            content_schema: dict[str, Any]
            if isinstance(ep.response, type) and issubclass(ep.response, BaseModel):
                content_schema = keyed[(ep.response, "serialization")]
            elif isinstance(ep.response, dict):
                content_schema = ep.response
            else:
                content_schema = {}
            op["responses"][str(ep.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": content_schema}},
            }
        codes = set(ep.errors)
        if ep.params or ep.query or ep.body:
            codes.add(400)
        if ep.params:
            codes.add(404)
        if ep.roles is not None:
            codes |= {401, 403}
            op["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
            op["x-roles"] = list(ep.roles)  # who may call it (a view may refuse more: its description says)
        else:
            op["security"] = []
        for code in sorted(codes):
            op["responses"][str(code)] = {
                "description": ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = op

    settings = app[appkeys.SETTINGS]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Polaris Express admin API",
            "version": __version__,
            "description": (
                "The admin API used by the terminal console. Authenticate with a bearer token "
                "(POST /api/admin/v1/auth/token) or the session cookie; cookie-authenticated "
                "writes need the X-CSRF-Token header. Errors are {\"error\": code, \"message\": text}. "
                "Lists are paginated: pass `cursor` from `next_cursor` to get the next page."
            ),
        },
        "servers": [{"url": settings.ADMIN_BASE_URL.rstrip("/")}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "polaris_session"},
            },
        },
    }


def _parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        if where == "query" and (prop.get("type") == "array" or "anyOf" in prop):
            param["explode"] = True
        out.append(param)
    return out


_CACHE: web.AppKey[dict] = web.AppKey("openapi_cache")


def setup(app: web.Application) -> None:
    """Serve the document (public) at /api/admin/v1/openapi.json, built on first request."""
    app[_CACHE] = {}  # filled lazily: the app is frozen by then, its dict is not
    app.router.add_get("/api/admin/v1/openapi.json", openapi_view, name="openapi")


async def openapi_view(request: web.Request) -> web.Response:
    cache = request.app[_CACHE]
    if "doc" not in cache:
        cache["doc"] = openapi_document(request.app)
    return web.json_response(cache["doc"], dumps=_dumps)
