"""Security headers for the customer side, and friendly error pages instead of bare text."""

from __future__ import annotations

import secrets

from aiohttp import web

from polaris.customer_web.common import PageError, render
from polaris.customer_web.strings import text
from polaris.db.errors import NotFound, RepoError
from polaris.logs import get_logger
from polaris.services.errors import ApiError

log = get_logger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    # Sign-in links carry their token in the path: never let it leak to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_page_path(path: str) -> bool:
    """Paths answered with HTML (everything on the customer side that is not an API or a probe)."""
    return not path.startswith(("/api/", "/healthz", "/readyz", "/metrics"))


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/api/admin/"):
        return
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


@web.middleware
async def error_pages(request: web.Request, handler):
    """HTML error pages for the portal's paths; API paths keep their JSON errors."""
    if not is_page_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except PageError as exc:
        return _page(request, exc.status, exc.title_key, exc.message)
    except ApiError as exc:
        title = {404: "error_404_title", 403: "error_403_title"}.get(exc.status, "error_generic_title")
        # The API's wording names a header; a person gets the form's wording.
        message = text("error_403_body") if exc.code == "csrf_failed" else exc.message
        return _page(request, exc.status, title, message)
    except NotFound as exc:
        return _page(request, 404, "error_404_title", str(exc))
    except RepoError as exc:
        return _page(request, 400, "error_generic_title", str(exc))
    except web.HTTPException as exc:
        if exc.status == 404:
            return _page(request, 404, "error_404_title", text("error_404_body"))
        if exc.status == 405:
            return _page(request, 405, "error_generic_title", text("error_404_body"))
        raise
    except Exception:
        ref = secrets.token_hex(4)
        log.exception("portal page failed", path=request.path, ref=ref)
        return _page(request, 500, "error_500_title", text("error_500_body", ref=ref))


def _page(request: web.Request, status: int, title_key: str, message: str) -> web.Response:
    return render(request, "error.html", {"title": text(title_key), "message": message}, status=status)
