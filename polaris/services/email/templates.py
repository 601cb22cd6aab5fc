"""Mail templates: a subject, a text and an HTML body (jinja2) for every category."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from polaris.db.errors import InvalidInput

BRAND = "Polaris Express"
TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class Category:
    subject: str  # a jinja expression over the same context as the bodies
    required: tuple[str, ...]


# The email worker's categories (ARCHITECTURE.md) plus operator alerts.
CATEGORIES: dict[str, Category] = {
    "magic-link": Category("Your sign-in link for {{ brand }}", ("link", "expires_minutes")),
    "welcome": Category("Welcome to {{ brand }}", ("portal_url",)),
    "session-summary": Category(
        "Your charging session at {{ charger }}: {{ '%.2f'|format(energy_kwh) }} kWh",
        ("charger", "started_at", "stopped_at", "duration", "energy_kwh", "session_url"),
    ),
    "reservation-cancelled": Category(
        "Your reservation at {{ charger }} was cancelled", ("charger", "reserved_until", "portal_url")
    ),
    "account-reactivated": Category("Your {{ brand }} account is active again", ("portal_url",)),
    "admin-password-reset": Category("Reset your {{ brand }} admin password", ("link", "expires_minutes")),
    "invoice-available": Category(
        "Your {{ brand }} invoice {{ invoice_number }}",
        ("invoice_number", "amount", "currency", "invoice_url"),
    ),
    "account-inactive": Category("Your {{ brand }} account was deactivated", ("portal_url",)),
    "operator-alert": Category("[{{ brand }}] {{ title }}", ("title", "message")),
}


@dataclass(frozen=True, slots=True)
class RenderedMail:
    category: str
    subject: str
    text: str
    html: str


def _env(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty line in a mail
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_TEXT = _env(False)
_HTML = _env(True)


def render(category: str, **context: Any) -> RenderedMail:
    """Render one mail; raises InvalidInput naming an unknown category or a missing value."""
    spec = CATEGORIES.get(category)
    if spec is None:
        raise InvalidInput(f"no mail category {category!r} (known: {', '.join(CATEGORIES)})")
    missing = [k for k in spec.required if context.get(k) is None]
    if missing:
        raise InvalidInput(f"a {category} mail needs {', '.join(missing)}")
    context = {"brand": BRAND, **context}
    subject = _TEXT.from_string(spec.subject).render(context).strip()
    text = _TEXT.get_template(f"{category}.txt.j2").render(context)
    html = _HTML.get_template(f"{category}.html.j2").render(context)
    return RenderedMail(category, " ".join(subject.split()), text, html)
