"""One error shape for every API path: `{"error": code, "message": ...}` with the right status.

Views raise `ApiError` (or a repository's domain error); malformed input never reaches a
500. Unexpected exceptions are logged with a reference and answered 500 without details.
"""

from __future__ import annotations

import asyncio
import json
import secrets

import asyncpg
import pydantic
from aiohttp import web

from polaris.db.errors import AlreadyExists, InvalidInput, NotFound, RepoError
from polaris.logs import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine code, and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str = "sign in first (session cookie or bearer token)") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="polaris"'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def bad_request(message: str, code: str = "invalid_input") -> ApiError:
    return ApiError(400, code, message)


# Codes for the statuses aiohttp raises itself (routing, body size, methods).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}

REPO_STATUS: dict[type[RepoError], int] = {NotFound: 404, AlreadyExists: 409, InvalidInput: 400}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path in ("/healthz", "/readyz")


def describe_validation(exc: pydantic.ValidationError) -> str:
    """One line naming each bad field and why."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message, exc.headers)
    except RepoError as exc:
        return json_error(REPO_STATUS.get(type(exc), 400), exc.code, str(exc))
    except pydantic.ValidationError:
        # Input is validated by the endpoint wrapper (400 there); a model failing here is
        # an answer the server could not build: a bug, never the client's fault.
        ref = secrets.token_hex(4)
        log.exception("response model failed", path=request.path, ref=ref)
        return json_error(500, "internal", f"internal error (reference {ref})")
    except json.JSONDecodeError as exc:
        return json_error(400, "invalid_json", f"the body is not valid JSON ({exc.msg})")
    except web.HTTPException as exc:
        if exc.status < 400 or not is_api_path(request.path):
            raise
        code = HTTP_CODES.get(exc.status, "error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "WWW-Authenticate")}
        return json_error(exc.status, code, message, headers)
    except (asyncpg.PostgresConnectionError, ConnectionRefusedError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("database unavailable", path=request.path, error=str(exc))
        return json_error(503, "database_unavailable", "the database is unreachable; try again shortly")
    except asyncpg.PostgresError as exc:
        # A constraint the validation missed: the input was wrong, not the server.
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
            return json_error(400, "invalid_input", f"rejected by the database: {exc.__class__.__name__}")
        ref = secrets.token_hex(4)
        log.exception("database error", path=request.path, ref=ref)
        return json_error(500, "internal", f"internal error (reference {ref})")
    except asyncio.CancelledError:
        raise
    except Exception:
        ref = secrets.token_hex(4)
        log.exception("unhandled error", path=request.path, ref=ref)
        if not is_api_path(request.path):
            raise
        return json_error(500, "internal", f"internal error (reference {ref})")
