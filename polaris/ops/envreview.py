"""`polaris doctor --env FILE`: read an existing `.env` (the original product's, or ours) and
say, line by line, what to keep, rename, remove or change, then what to add.

Only the file is read: no network, no database. Values are never printed, secrets least of
all; a line names the variable and what to do about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from polaris.config import (
    ORIGINAL_ALIASES,
    ORIGINAL_UNUSED,
    PURPOSE,
    SECRET_MIN_LENGTH,
    SECRET_SETTINGS,
    ConfigError,
    Settings,
    load_settings,
)

# Read by docker-compose.yml, Caddy or the postgres image rather than the services.
COMPOSE_NAMES = {
    "POSTGRES_PASSWORD": "the postgres container's password (and the default DATABASE_URL)",
    "POSTGRES_USER": "the postgres container's user (and the default DATABASE_URL)",
    "POSTGRES_DB": "the postgres container's database (and the default DATABASE_URL)",
    "OCPP_HOST": "the hostname chargers connect to (Caddy)",
    "ACME_EMAIL": "the Let's Encrypt account (Caddy)",
    "POLARIS_IMAGE_TAG": "the image docker compose runs",
    "WEB_UPSTREAM": "where Caddy finds the web process (split hosts)",
    "OCPP_UPSTREAM": "where Caddy finds the OCPP server (split hosts)",
    "POSTGRES_BIND_ADDRESS": "the database host's private address (split hosts)",
    "OCPP_API_BIND_ADDRESS": "the OCPP host's private address (split hosts)",
}
# Names of the original that mean the same here.
ORIGINAL_SAME = {
    "DATABASE_URL", "STEVE_BASE_URL", "STEVE_API_USERNAME", "STEVE_API_KEY", "LAGO_API_URL", "LAGO_API_KEY",
    "LAGO_DASHBOARD_URL", "LAGO_METRIC_CODE", "SYNC_CRON_SCHEDULE", "SYNC_ON_STARTUP", "SYNC_LOOKBACK_MINUTES",
    "SYNC_DORMANT_THRESHOLD_DAYS", "SYNC_IDLE_HYSTERESIS_TICKS", "AUTH_SECRET", "SSE_TRANSPORT",
    "SSE_MAX_PENDING_PER_CLIENT", "CF_EMAIL_WORKER_URL", "CF_EMAIL_WORKER_SECRET", "EMAIL_FROM", "EMAIL_FROM_ADMIN",
    "MAGIC_LINK_TTL_SECONDS", "MAGIC_LINK_INVITE_TTL_SECONDS", "ADMIN_PASSWORD_RESET_TTL_SECONDS",
    "CUSTOMER_SESSION_TTL_SECONDS", "STEVE_PREAUTH_HMAC_KEY", "STEVE_METERVALUE_HMAC_KEY", "ADMIN_BASE_URL",
    "CUSTOMER_BASE_URL", "COOKIE_DOMAIN", "OPERATOR_CONTACT_EMAIL", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC",
}
PLACEHOLDER = re.compile(r"your_|_here\b|changeme|^example$", re.IGNORECASE)
# What a production .env must have that the original's example did not carry.
MUST_HAVE = (
    ("ADMIN_BASE_URL", "the admin site's public https URL, e.g. https://manage.example.com"),
    ("CUSTOMER_BASE_URL", "the portal's public https URL (AUTH_URL is read as it; name it so)"),
    ("COOKIE_DOMAIN", "the cookie domain both hosts share, e.g. .example.com"),
    ("STEVE_PREAUTH_HMAC_KEY", "HMAC key of the OCPP server's pre-authorize hook (`polaris secrets`)"),
    ("OCPP_HOST", "the hostname chargers connect to (Caddy gets its certificate)"),
    ("ACME_EMAIL", "the Let's Encrypt account email (Caddy)"),
    ("POSTGRES_PASSWORD", "the postgres container's password (`polaris secrets`)"),
    ("CF_EMAIL_WORKER_URL", "the deployed email worker's URL (unset: mail waits in the outbox)"),
    ("CF_EMAIL_WORKER_SECRET", "the email worker's shared secret, the same value the worker holds"),
    ("EMAIL_FROM", "a sender the worker allows, e.g. Polaris Express <noreply@polaris.express>"),
)


@dataclass(frozen=True, slots=True)
class Advice:
    line: int | None  # None: something to add
    name: str
    action: str  # keep, rename, remove, change, add
    message: str

    def render(self) -> str:
        where = f"line {self.line}" if self.line is not None else "add"
        return f"{where}: {self.name}: {self.action.upper()}: {self.message}"


def parse(path: Path) -> list[tuple[int, str, str]]:
    """(line number, name, value) of every assignment; comments and blanks skipped."""
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.append((n, name, value))
    return out


def _advise(n: int, name: str, value: str, seen: set[str]) -> Advice:
    if name in ORIGINAL_ALIASES:
        ours = ORIGINAL_ALIASES[name]
        if ours in seen:
            return Advice(n, name, "remove", f"{ours} is set too and wins; this line is ignored")
        return Advice(n, name, "rename", f"the original's name, read here as {ours}; rename it to {ours}")
    if name in ORIGINAL_UNUSED:
        return Advice(n, name, "remove", f"not used here: {ORIGINAL_UNUSED[name]}")
    if name in SECRET_SETTINGS:
        if not value:
            return Advice(n, name, "change", f"empty: generate one with `polaris secrets` ({PURPOSE[name]})")
        if PLACEHOLDER.search(value):
            return Advice(n, name, "change", "still the example's placeholder: generate one with `polaris secrets`")
        if len(value) < SECRET_MIN_LENGTH:
            return Advice(n, name, "change", f"{len(value)} characters, shorter than the {SECRET_MIN_LENGTH} "
                          "recommended; the services run with it, doctor warns until it is replaced (docs/secrets.md)")
        return Advice(n, name, "keep", "set")
    if name == "DATABASE_URL" and (urlsplit(value).hostname or "") in ("localhost", "127.0.0.1"):
        return Advice(n, name, "remove", "points at this machine; with docker compose leave it unset (it is "
                      "built from POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB); set it only for split hosts")
    if name == "STEVE_BASE_URL" and "/steve" in value:
        return Advice(n, name, "remove", "points at SteVe; with docker compose leave it unset (the web process "
                      "reaches this OCPP server at http://ocpp:8081); chargers move to OCPP_HOST")
    if name in ("ADMIN_BASE_URL", "CUSTOMER_BASE_URL") and value.startswith("http://"):
        return Advice(n, name, "change", "plain http: production needs the public https URL")
    if name == "LAGO_API_KEY" and PLACEHOLDER.search(value):
        return Advice(n, name, "change", "still the example's placeholder: the key from Lago's developer settings")
    if name == "SSE_TRANSPORT" and value.lower() == "memory":
        return Advice(n, name, "keep", "memory (one web instance); set postgres before running several")
    if name in Settings.model_fields:
        return Advice(n, name, "keep", "same name and meaning here" if name in ORIGINAL_SAME else "ours")
    if name in ("POSTGRES_USER", "POSTGRES_DB") and value != "polaris":
        return Advice(n, name, "keep", f"read by docker-compose.yml: {COMPOSE_NAMES[name]}; it names a fresh "
                      "database here (the original's data comes in through `polaris import`, not this volume)")
    if name in COMPOSE_NAMES:
        return Advice(n, name, "keep", f"read by docker-compose.yml: {COMPOSE_NAMES[name]}")
    return Advice(n, name, "remove", "not read by Polaris Express")


def review(path: Path) -> list[Advice]:
    """Advice for every assignment in `path`, then for what it lacks."""
    entries = parse(path)
    seen = {name for _, name, _ in entries}
    advice = [_advise(n, name, value, seen) for n, name, value in entries]
    has = seen | {ORIGINAL_ALIASES[a] for a in seen if a in ORIGINAL_ALIASES}
    for name, why in MUST_HAVE:
        if name not in has:
            advice.append(Advice(None, name, "add", why))
    if "CHARGING_POLICY" not in has:
        advice.append(Advice(None, "CHARGING_POLICY", "add", "open keeps the original's rule (any known card "
                             "that is not blocked may charge); subscription also needs an active Lago "
                             "subscription. Unset: open once cards were imported from the original, else subscription"))
    return advice


def settings_problems(path: Path) -> list[str]:
    """What the services would refuse when started with this file (empty: they start)."""
    try:
        s = load_settings(env_file=path)
        s.require("database", "web", "ocpp", "sync")
    except ConfigError as exc:
        return exc.problems
    return []


def render(path: Path, advice: list[Advice], problems: list[str]) -> str:
    lines = [f"Review of {path} (values are not shown):"]
    lines += [f"  {a.render()}" for a in advice]
    todo = [a for a in advice if a.action != "keep"]
    if problems:
        lines.append("The services would not start with it:")
        lines += [f"  - {p}" for p in problems]
    lines.append(f"{len(todo)} line(s) to act on." if todo else "Nothing to change.")
    return "\n".join(lines) + "\n"
