"""Settings from environment variables (and an optional `.env`), validated once at start.

Every process reads the same `Settings`; each command then asks for the settings it
needs with `settings.require(...)`, which raises one `ConfigError` naming every missing
or invalid variable and what it is for. Secrets are `SecretStr` and never printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from polaris.forwarded import Network, trusted_networks
from polaris.settings_doc import (  # what each setting is for (re-exported)
    ORIGINAL_ALIASES,
    ORIGINAL_UNUSED,
    PURPOSE,
)

SECRET_MIN_LENGTH = 32
SECRET_SETTINGS = (
    "AUTH_SECRET", "CF_EMAIL_WORKER_SECRET", "STEVE_PREAUTH_HMAC_KEY", "STEVE_METERVALUE_HMAC_KEY", "STEVE_API_KEY",
)
# The sender of local-mode mail (plain-http URLs: development, tests); never used in production.
LOCAL_EMAIL_FROM = "Polaris Express <no-reply@localhost>"
# Mail the original product never sent; off unless named in EMAIL_OPTIONAL_CATEGORIES.
OPTIONAL_EMAIL_CATEGORIES = ("welcome", "account-inactive", "account-reactivated")
# Caddy's fixed address on docker-compose.yml's network (the default TRUSTED_PROXIES).
COMPOSE_CADDY_ADDRESS = "172.30.80.10"


class ConfigError(Exception):
    """Settings are missing or invalid; `problems` holds one line per variable."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def render(self) -> str:
        lines = ["Configuration problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def lago_api_root(url: str) -> str:
    """Lago's base URL without one trailing `/api/v1`: Polaris appends it to every path, and
    Lago's OpenAPI spec lists its server as https://api.getlago.com/api/v1, which operators copy."""
    root = url.strip().rstrip("/")
    if root.lower().endswith("/api/v1"):
        root = root[: -len("/api/v1")].rstrip("/")
    return root


class Settings(BaseSettings):
    """Every setting of every process. Defaults are the local-development ones."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    DATABASE_URL: SecretStr | None = None

    AUTH_SECRET: SecretStr | None = None
    COOKIE_DOMAIN: str | None = None
    ADMIN_BASE_URL: str = "http://admin.localhost:8000"
    CUSTOMER_BASE_URL: str = Field("http://localhost:8000", validation_alias=AliasChoices("CUSTOMER_BASE_URL", "AUTH_URL"))

    LAGO_API_URL: str = "https://api.getlago.com"
    LAGO_API_KEY: SecretStr | None = None
    LAGO_DASHBOARD_URL: str = "https://app.getlago.com"
    LAGO_METRIC_CODE: str = "ev_charging_kwh"
    LAGO_WEBHOOK_HMAC_KEY: SecretStr | None = None

    CF_EMAIL_WORKER_URL: str | None = None
    CF_EMAIL_WORKER_SECRET: SecretStr | None = None
    # No production default: a sender the worker does not allow gets every mail refused.
    EMAIL_FROM: str | None = None
    EMAIL_FROM_ADMIN: str | None = None
    EMAIL_OPTIONAL_CATEGORIES: str = ""

    ADMIN_OIDC_ISSUER: str | None = None
    ADMIN_OIDC_CLIENT_ID: str | None = None
    ADMIN_OIDC_CLIENT_SECRET: SecretStr | None = None
    ADMIN_OIDC_ADMIN_GROUP: str | None = None
    # Who gets in (docs/security.md): OIDC provisioning, proxies, the metrics listener.
    ADMIN_OIDC_ALLOWED_GROUPS: str = ""
    ADMIN_OIDC_ALLOWED_DOMAINS: str = ""
    TRUSTED_PROXIES: str = COMPOSE_CADDY_ADDRESS
    WEB_METRICS_PORT: int = Field(8001, ge=1, le=65535)
    METRICS_TOKEN: SecretStr | None = None

    APNS_KEY_ID: str | None = None
    APNS_TEAM_ID: str | None = None
    APNS_KEY_BASE64: SecretStr | None = None
    APNS_TOPIC: str | None = None
    APNS_USE_SANDBOX: bool = False

    STEVE_PREAUTH_HMAC_KEY: SecretStr | None = None
    STEVE_METERVALUE_HMAC_KEY: SecretStr | None = None
    STEVE_API_USERNAME: str = "admin"
    STEVE_API_KEY: SecretStr | None = None
    STEVE_BASE_URL: str = "http://127.0.0.1:8081"
    WEB_INTERNAL_URL: str = "http://127.0.0.1:8000"

    WEB_PORT: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("WEB_PORT", "PORT"))
    OCPP_PORT: int = Field(8080, ge=1, le=65535)
    OCPP_API_PORT: int = Field(8081, ge=1, le=65535)
    OCPP_TLS_CERT: Path | None = None
    OCPP_TLS_KEY: Path | None = None
    OCPP_UNKNOWN_CHARGERS: Literal["reject", "pending", "accepted"] = "reject"
    OCPP_HEARTBEAT_INTERVAL: int = Field(300, ge=10, le=86400)
    OCPP_STUCK_TRANSACTION_HOURS: float = Field(24.0, gt=0)
    # charger admission (security profiles and limits)
    OCPP_PROFILE0_PATHS: str = "/steve/websocket/CentralSystemService/"
    OCPP_AUTH_FAILURES_BEFORE_BACKOFF: int = Field(5, ge=1)
    OCPP_AUTH_BACKOFF_MAX_SECONDS: float = Field(300.0, gt=0)
    OCPP_UNKNOWN_ID_CACHE_SECONDS: float = Field(60.0, ge=0)
    OCPP_MAX_CONNECTIONS_PER_ADDRESS: int = Field(256, ge=1)
    OCPP_MAX_MESSAGES_PER_SECOND: float = Field(10.0, gt=0)
    # site load management
    LOADMGMT_ENABLED: bool = True
    LOADMGMT_INTERVAL_SECONDS: float = Field(30.0, gt=0)
    LOADMGMT_SETTLE_SECONDS: float = Field(1.0, ge=0)
    LOADMGMT_THRESHOLD_AMPS: float = Field(1.0, ge=0)
    LOADMGMT_FAILSAFE_LEASE_SECONDS: int = Field(900, ge=10)
    LOADMGMT_RETRY_SECONDS: float = Field(60.0, gt=0)

    SYNC_ON_STARTUP: bool = False  # the original's default; deploy/.env.example turns it on
    SYNC_LOOKBACK_MINUTES: int = Field(1440, ge=1)
    SYNC_DORMANT_THRESHOLD_DAYS: int = Field(30, ge=1)
    SYNC_IDLE_HYSTERESIS_TICKS: int = Field(2, ge=1)
    SYNC_CRON_SCHEDULE: str | None = None

    ALERT_EMAILS: str = ""
    ALERT_CHARGER_OFFLINE_MINUTES: int = Field(15, ge=1)
    ALERT_SITE_OVER_LIMIT_MINUTES: float = Field(1.0, gt=0)
    ALERT_SYNC_FAILURES: int = Field(3, ge=1)
    ALERT_OUTBOX_STUCK_MINUTES: int = Field(30, ge=1)
    ALERT_UNBILLABLE_SESSIONS: int = Field(10, ge=0)
    ALERT_UNSENT_USAGE_MINUTES: int = Field(60, ge=1)

    # The original's default; deploy/.env.example (several web instances) sets postgres.
    SSE_TRANSPORT: Literal["memory", "postgres"] = "memory"
    SSE_MAX_PENDING_PER_CLIENT: int = Field(1000, ge=1)

    OPERATOR_CONTACT_EMAIL: str | None = None
    MAGIC_LINK_TTL_SECONDS: int = Field(900, ge=60)
    MAGIC_LINK_INVITE_TTL_SECONDS: int = Field(86400, ge=60)
    ADMIN_PASSWORD_RESET_TTL_SECONDS: int = Field(1800, ge=60)
    CUSTOMER_SESSION_TTL_SECONDS: int = Field(28800, ge=60)
    # Unset: open for a deployment whose cards were imported from the original, else subscription.
    CHARGING_POLICY: Literal["open", "subscription"] | None = None

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=AliasChoices("LOG_LEVEL", "DEBUG_LEVEL")
    )
    LOG_FORMAT: Literal["json", "console", "auto"] = "auto"
    POLARIS_DATA_DIR: Path = Path(".polaris")
    POLARIS_LOCAL_LAGO_PORT: int = Field(8090, ge=1, le=65535)

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip().upper()
            return "WARNING" if v == "WARN" else v  # the original's DEBUG_LEVEL says WARN
        return v

    @field_validator("TRUSTED_PROXIES")
    @classmethod
    def _proxies(cls, v: str) -> str:
        trusted_networks(v)  # raises ValueError naming the bad entry
        return v

    @field_validator(
        "COOKIE_DOMAIN",
        "CF_EMAIL_WORKER_URL",
        "EMAIL_FROM",
        "EMAIL_FROM_ADMIN",
        "OPERATOR_CONTACT_EMAIL",
        "CHARGING_POLICY",
        "ADMIN_OIDC_ISSUER",
        "ADMIN_OIDC_CLIENT_ID",
        "ADMIN_OIDC_ADMIN_GROUP",
        "APNS_KEY_ID",
        "APNS_TEAM_ID",
        "APNS_TOPIC",
        "SYNC_CRON_SCHEDULE",
        "OCPP_TLS_CERT",
        "OCPP_TLS_KEY",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # `.env` files and compose often carry `NAME=` for "not set".
        return None if isinstance(v, str) and not v.strip() else v

    # --- derived values -------------------------------------------------------

    @property
    def database_url(self) -> str | None:
        return self.DATABASE_URL.get_secret_value() if self.DATABASE_URL else None

    @property
    def local_mode(self) -> bool:
        """True when the public URLs are plain http (development, tests)."""
        return not (
            self.ADMIN_BASE_URL.startswith("https://")
            and self.CUSTOMER_BASE_URL.startswith("https://")
        )

    @property
    def lago_api_root(self) -> str:
        """LAGO_API_URL without a trailing /api/v1 (Lago's spec lists its server with it)."""
        return lago_api_root(self.LAGO_API_URL)

    @property
    def admin_host(self) -> str:
        return (urlsplit(self.ADMIN_BASE_URL).hostname or "").lower()

    @property
    def customer_host(self) -> str:
        return (urlsplit(self.CUSTOMER_BASE_URL).hostname or "").lower()

    @property
    def metervalue_hmac_key(self) -> SecretStr | None:
        return self.STEVE_METERVALUE_HMAC_KEY or self.STEVE_PREAUTH_HMAC_KEY

    @property
    def profile0_paths(self) -> tuple[str, ...]:
        """OCPP_PROFILE0_PATHS split on commas, each ending in '/'."""
        parts = (p.strip() for p in self.OCPP_PROFILE0_PATHS.split(","))
        return tuple(p if p.endswith("/") else p + "/" for p in parts if p)

    @property
    def alert_recipients(self) -> list[str]:
        """ALERT_EMAILS split on commas, blanks dropped, duplicates removed (order kept)."""
        seen: dict[str, None] = {}
        for part in self.ALERT_EMAILS.split(","):
            if part.strip():
                seen.setdefault(part.strip(), None)
        return list(seen)

    @property
    def trusted_proxies(self) -> tuple[Network, ...]:
        return trusted_networks(self.TRUSTED_PROXIES)

    @property
    def oidc_allowed_groups(self) -> frozenset[str]:
        return frozenset(g.strip() for g in self.ADMIN_OIDC_ALLOWED_GROUPS.split(",") if g.strip())

    @property
    def oidc_allowed_domains(self) -> frozenset[str]:
        return frozenset(d.strip().lower().lstrip("@") for d in self.ADMIN_OIDC_ALLOWED_DOMAINS.split(",") if d.strip())

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.ADMIN_OIDC_ISSUER)

    @property
    def apns_enabled(self) -> bool:
        return all((self.APNS_KEY_ID, self.APNS_TEAM_ID, self.APNS_KEY_BASE64, self.APNS_TOPIC))

    @property
    def email_worker_enabled(self) -> bool:
        return bool(self.CF_EMAIL_WORKER_URL)

    @property
    def email_sender(self) -> str | None:
        """From: of customer mail; in local mode a localhost stand-in, in production only EMAIL_FROM."""
        if self.EMAIL_FROM:
            return self.EMAIL_FROM
        return LOCAL_EMAIL_FROM if self.local_mode else None

    @property
    def email_admin_sender(self) -> str | None:
        """From: of operator mail: EMAIL_FROM_ADMIN, else the customer sender."""
        return self.EMAIL_FROM_ADMIN or self.email_sender

    @property
    def email_optional_categories(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.EMAIL_OPTIONAL_CATEGORIES.split(",") if c.strip())

    def email_sender_problem(self) -> str | None:
        """Why mail cannot be attempted although a worker is configured, or None."""
        if self.email_worker_enabled and self.email_sender is None:
            return ("EMAIL_FROM is not set: the email worker only sends from the addresses it allows "
                    "(the original's: Polaris Express <noreply@polaris.express>), so no mail is attempted "
                    "and it waits in the outbox")
        return None

    # --- validation per process ----------------------------------------------

    def require(self, *groups: str) -> Settings:
        """Check the settings a process needs; raise one ConfigError listing every problem.

        Groups: "database", "web", "ocpp", "sync", "email". Returns self for chaining.
        """
        problems: list[str] = []
        checks = {
            "database": self._check_database,
            "web": self._check_web,
            "ocpp": self._check_ocpp,
            "sync": self._check_sync,
            "email": self._check_email,
        }
        for group in groups:
            problems += checks[group]()
        if problems:
            raise ConfigError(_dedupe(problems))
        return self

    def _check_database(self) -> list[str]:
        url = self.database_url
        if not url:
            return [
                "DATABASE_URL is not set: it is "
                + PURPOSE["DATABASE_URL"]
                + ". Services do not start the embedded Postgres; `polaris up` does."
            ]
        scheme = urlsplit(url).scheme
        if scheme not in ("postgres", "postgresql"):
            return [f"DATABASE_URL must start with postgresql:// (got a {scheme or 'missing'} scheme)"]
        return []

    def _check_secret(self, name: str, *, required: bool = True) -> list[str]:
        value: SecretStr | None = getattr(self, name)
        if value is None or not value.get_secret_value():
            return [f"{name} is not set: it is {PURPOSE[name]}"] if required else []
        # Shorter than our minimum: the original accepted it, so it is a warning
        # (`weak_secrets`, shown by doctor and logged at start), not a stop.
        return []

    def weak_secrets(self) -> list[str]:
        """One line per secret set shorter than SECRET_MIN_LENGTH (doctor warns; services run)."""
        out = []
        for name in SECRET_SETTINGS:
            value: SecretStr | None = getattr(self, name)
            if value is not None and 0 < len(value.get_secret_value()) < SECRET_MIN_LENGTH:
                out.append(f"{name} is {len(value.get_secret_value())} characters, shorter than the "
                           f"{SECRET_MIN_LENGTH} recommended ({PURPOSE[name]}); replace it "
                           "(docs/secrets.md) when you can")
        return out

    def _check_url(self, name: str) -> list[str]:
        value = getattr(self, name)
        parts = urlsplit(value or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return [f"{name} must be an http(s) URL with a host: it is {PURPOSE[name]}"]
        return []

    def _check_web(self) -> list[str]:
        problems = self._check_secret("AUTH_SECRET")
        problems += self._check_url("ADMIN_BASE_URL") + self._check_url("CUSTOMER_BASE_URL")
        problems += self._check_secret("STEVE_PREAUTH_HMAC_KEY")
        problems += self._check_secret("STEVE_METERVALUE_HMAC_KEY", required=False)
        problems += self._check_secret("STEVE_API_KEY")
        problems += self._check_url("STEVE_BASE_URL")
        bad = [a for a in self.alert_recipients if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", a)]
        if bad:
            problems.append(f"ALERT_EMAILS has {', '.join(bad)}, which is not an email address")
        if not self.local_mode and not self.COOKIE_DOMAIN:
            problems.append(
                "COOKIE_DOMAIN is not set: it is " + PURPOSE["COOKIE_DOMAIN"]
            )
        if self.COOKIE_DOMAIN:
            for name, host in (
                ("ADMIN_BASE_URL", self.admin_host),
                ("CUSTOMER_BASE_URL", self.customer_host),
            ):
                if host and not cookie_domain_covers(self.COOKIE_DOMAIN, host):
                    problems.append(
                        f"COOKIE_DOMAIN {self.COOKIE_DOMAIN} does not cover {name} host {host}"
                    )
        if self.ADMIN_OIDC_ISSUER:
            problems += self._check_url("ADMIN_OIDC_ISSUER")
            if not self.ADMIN_OIDC_CLIENT_ID:
                problems.append(
                    "ADMIN_OIDC_CLIENT_ID is not set: it is needed because ADMIN_OIDC_ISSUER is set"
                )
            if not self.ADMIN_OIDC_CLIENT_SECRET:
                problems.append(
                    "ADMIN_OIDC_CLIENT_SECRET is not set: it is needed because ADMIN_OIDC_ISSUER is set"
                )
        problems += self._check_email()
        return problems

    def _check_email(self) -> list[str]:
        problems = []
        unknown = sorted(self.email_optional_categories - set(OPTIONAL_EMAIL_CATEGORIES))
        if unknown:
            problems.append(f"EMAIL_OPTIONAL_CATEGORIES has {', '.join(unknown)}: it may name "
                            + ", ".join(OPTIONAL_EMAIL_CATEGORIES))
        if not self.CF_EMAIL_WORKER_URL:
            return problems
        return problems + self._check_url("CF_EMAIL_WORKER_URL") + self._check_secret("CF_EMAIL_WORKER_SECRET")

    def _check_ocpp(self) -> list[str]:
        problems = self._check_secret("STEVE_API_KEY")
        problems += self._check_secret("STEVE_PREAUTH_HMAC_KEY")
        problems += self._check_secret("STEVE_METERVALUE_HMAC_KEY", required=False)
        problems += self._check_url("WEB_INTERNAL_URL")
        bad_paths = [p for p in self.profile0_paths if not p.startswith("/")]
        if bad_paths:
            problems.append(f"OCPP_PROFILE0_PATHS must hold URL paths starting with '/' (got {', '.join(bad_paths)})")
        if bool(self.OCPP_TLS_CERT) != bool(self.OCPP_TLS_KEY):
            problems.append("OCPP_TLS_CERT and OCPP_TLS_KEY must be set together (WSS on the OCPP server)")
        for name in ("OCPP_TLS_CERT", "OCPP_TLS_KEY"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                problems.append(f"{name} points to {path}, which is not a readable file")
        return problems

    def _check_sync(self) -> list[str]:
        problems = self._check_url("LAGO_API_URL")
        if not self.LAGO_API_KEY or not self.LAGO_API_KEY.get_secret_value():
            problems.append("LAGO_API_KEY is not set: it is " + PURPOSE["LAGO_API_KEY"])
        if not self.LAGO_METRIC_CODE.strip():
            problems.append("LAGO_METRIC_CODE must not be empty: it is " + PURPOSE["LAGO_METRIC_CODE"])
        if self.SYNC_CRON_SCHEDULE and len(self.SYNC_CRON_SCHEDULE.split()) != 5:
            problems.append(
                "SYNC_CRON_SCHEDULE must be a 5-field cron expression (minute hour day month weekday)"
            )
        return problems

    def disabled_features(self) -> list[str]:
        """Optional integrations that are off, for one log line each at start."""
        off = []
        if not self.oidc_enabled:
            off.append("admin OIDC sign-on is off (ADMIN_OIDC_ISSUER unset)")
        if not self.apns_enabled:
            off.append("iOS push is off (APNS_KEY_ID/APNS_TEAM_ID/APNS_KEY_BASE64/APNS_TOPIC unset)")
        if not self.email_worker_enabled:
            off.append("mail is kept in the outbox (CF_EMAIL_WORKER_URL unset); see `polaris admin outbox`")
        elif self.email_sender_problem():
            off.append(self.email_sender_problem() or "")
        return off


def cookie_domain_covers(cookie_domain: str, host: str) -> bool:
    """True when a cookie set for `cookie_domain` is sent to `host` (RFC 6265 domain-match)."""
    domain = cookie_domain.lower().lstrip(".")
    host = host.lower()
    return host == domain or host.endswith("." + domain)


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def original_names_in_use(env_file: str | os.PathLike[str] | None = ".env") -> list[str]:
    """One line per name of the original's .env found (environment or `env_file`) that is
    read under another name here or means nothing here; for the log at start and doctor."""
    found: dict[str, str] = {}
    if env_file is not None and os.path.exists(env_file):
        from dotenv import dotenv_values

        found.update({k: v or "" for k, v in dotenv_values(env_file).items()})
    wanted = set(ORIGINAL_ALIASES) | set(ORIGINAL_ALIASES.values()) | set(ORIGINAL_UNUSED)
    found.update({k: v for k, v in os.environ.items() if k in wanted})
    lines = []
    for name, ours in ORIGINAL_ALIASES.items():
        if name in found:
            shadow = " (ignored: " + ours + " is set too)" if ours in found else ""
            lines.append(f"{name} (the original's name) is read as {ours}{shadow}")
    for name, why in ORIGINAL_UNUSED.items():
        if name in found:
            lines.append(f"{name} is not used here: {why}")
    return lines


def log_start_notes(settings: Settings, log: object, env_file: str | os.PathLike[str] | None = ".env") -> None:
    """What a service says once at start about its settings: the original's names it read
    or ignores, and secrets shorter than recommended (warnings; the service runs)."""
    # Warnings, but never silenced: the original's DEBUG_LEVEL=ERROR would hide them, so then
    # they go out at ERROR (once per start).
    say = getattr(log, "error" if settings.LOG_LEVEL == "ERROR" else "warning")
    for line in original_names_in_use(env_file):
        say("setting from the original product", detail=line)
    for line in settings.weak_secrets():
        say("weak secret", detail=line)


def load_settings(env_file: str | os.PathLike[str] | None = ".env") -> Settings:
    """Read and type-check every setting; raise ConfigError naming each bad variable."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            purpose = PURPOSE.get(ORIGINAL_ALIASES.get(name, name))
            msg = err["msg"]
            problems.append(f"{name} is invalid: {msg}" + (f" ({purpose})" if purpose else ""))
        raise ConfigError(problems) from None


def ocpp_public_host() -> str | None:
    """OCPP_HOST, the hostname chargers connect to, from the environment or `.env`.

    It is Caddy's setting (it terminates WSS there), not one the Python processes read, so
    it is not in `Settings`; doctor checks it and smoke connects through it.
    """
    value = os.environ.get("OCPP_HOST")
    if value is None and os.path.exists(".env"):
        from dotenv import dotenv_values

        value = dotenv_values(".env").get("OCPP_HOST")
    return (value or "").strip().lower() or None
