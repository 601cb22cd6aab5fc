"""`polaris doctor`: the install guide's "Verify you are ready" checklist as code.

One async function per check, each returning a `CheckResult` (ok, warn or fail, a
message, and a fix for anything not ok), run by polaris/ops/checks.py: concurrently, each
within a time limit, a broken check one failed line. What reaches outside the process (DNS,
HTTP, the `docker` binary, /proc/meminfo) comes from `DoctorContext`, so tests can point
each at a local stand-in while the production code paths stay the same.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from polaris.config import ConfigError, Settings, cookie_domain_covers, lago_api_root
from polaris.db.migrate import MigrationError, pending_migrations
from polaris.db.pool import connect, describe_connect_error
from polaris.ops import checks
from polaris.ops.checks import CheckContext, CheckResult, checklist_lines

# A "4 GB" VPS reports about 3.8 GiB in MemTotal once the kernel has taken its share,
# so the line is drawn a little below 4 GB rather than at it.
MIN_MEMORY_BYTES = 3_700_000_000
MIN_DOCKER_MAJOR = 24
MIN_POSTGRES_MAJOR = 14
# A generated hex secret uses ~16 distinct characters; a placeholder like "changeme" repeated
# or "aaaa..." uses few. Below this, the value was typed, not generated.
MIN_DISTINCT_CHARS = 10
SECRET_NAMES = (
    "AUTH_SECRET",
    "CF_EMAIL_WORKER_SECRET",
    "STEVE_PREAUTH_HMAC_KEY",
    "STEVE_METERVALUE_HMAC_KEY",
    "STEVE_API_KEY",
)


Resolver = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str) -> list[str]:
    """Addresses of `host` through the system resolver (what curl and Caddy would see)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


@dataclass
class DoctorContext(CheckContext):
    ocpp_host: str | None = None
    resolve: Resolver = system_resolve
    meminfo: Path = Path("/proc/meminfo")
    # PATH used to find `docker`; None means the process's own PATH.
    search_path: str | None = None


# --- configuration ----------------------------------------------------------------


async def check_settings(ctx: DoctorContext) -> CheckResult:
    """Every variable the services need is present and valid (the services' own checks)."""
    title = "Required settings"
    try:
        ctx.settings.require("database", "web", "ocpp", "sync")
    except ConfigError as exc:
        return CheckResult(
            "settings",
            title,
            "fail",
            "\n".join(exc.problems),
            "set each variable named above in .env (deploy/.env.example explains every one); "
            "`polaris secrets --write .env` fills in missing secrets",
        )
    return CheckResult("settings", title, "ok", "every variable the services need is set and valid")


def _secret(settings: Settings, name: str) -> str | None:
    value: SecretStr | None = getattr(settings, name)
    return value.get_secret_value() if value is not None and value.get_secret_value() else None


async def check_secret_strength(ctx: DoctorContext) -> CheckResult:
    """Secrets look generated (not typed placeholders) and none is reused for another purpose."""
    title = "Secret strength"
    values = {n: v for n in SECRET_NAMES if (v := _secret(ctx.settings, n))}
    if not values:
        return CheckResult("secrets", title, "fail", "no secrets are set", "run `polaris secrets --write .env`")
    weak = [n for n, v in values.items() if len(set(v)) < MIN_DISTINCT_CHARS]
    seen: dict[str, str] = {}
    reused = []
    for name, value in values.items():
        if value in seen:
            reused.append(f"{name} = {seen[value]}")
        seen.setdefault(value, name)
    problems = []
    if weak:
        verb = "looks" if len(weak) == 1 else "look"
        problems.append(f"{', '.join(weak)} {verb} typed, not generated (too few distinct characters)")
    if reused:
        problems.append(f"the same value is used twice: {', '.join(reused)}")
    # Shorter than recommended but accepted (the original product took them): a warning.
    short = ctx.settings.weak_secrets()
    fix = ("replace them with generated values: `polaris secrets` prints a fresh set "
           "(docs/secrets.md explains rotating a secret without downtime)")
    if problems:
        return CheckResult("secrets", title, "fail", "; ".join(problems + short), fix)
    if short:
        return CheckResult("secrets", title, "warn", "; ".join(short) + "; the services run with them", fix)
    return CheckResult("secrets", title, "ok", f"{len(values)} secrets set, each distinct and random-looking")


def _is_local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def check_hostnames(ctx: DoctorContext) -> CheckResult:
    """Customer and admin hosts chosen, on https, distinct, and sharing the cookie's apex."""
    s = ctx.settings
    title = "Hostnames and cookie domain"
    problems: list[str] = []
    fixes: list[str] = []
    for name, url, host in (
        ("CUSTOMER_BASE_URL", s.CUSTOMER_BASE_URL, s.customer_host),
        ("ADMIN_BASE_URL", s.ADMIN_BASE_URL, s.admin_host),
    ):
        if not url.startswith("https://"):
            problems.append(f"{name} is {url}, not https://")
        if not host or _is_local_host(host):
            problems.append(f"{name} points at {host or 'no host'}, which customers cannot reach")
    if problems:
        fixes.append(
            "choose public hostnames on one apex, e.g. CUSTOMER_BASE_URL=https://polaris.example.com "
            "and ADMIN_BASE_URL=https://manage.example.com"
        )
    if ctx.ocpp_host and _is_local_host(ctx.ocpp_host):
        problems.append(f"OCPP_HOST is {ctx.ocpp_host}, which chargers cannot reach")
        fixes.append("set OCPP_HOST to the public hostname chargers connect to, e.g. ocpp.example.com")
    if s.customer_host and s.customer_host == s.admin_host:
        problems.append(f"the customer and admin sites share the host {s.customer_host}")
        fixes.append("give the admin site its own hostname (pages are routed by host)")
    domain = s.COOKIE_DOMAIN
    if not domain:
        problems.append("COOKIE_DOMAIN is not set")
        fixes.append("set COOKIE_DOMAIN to the shared apex with a leading dot, e.g. .example.com")
    else:
        apex = domain.lstrip(".")
        uncovered = [
            h for h in (s.customer_host, s.admin_host) if h and not cookie_domain_covers(domain, h)
        ]
        if "." not in apex:
            problems.append(f"COOKIE_DOMAIN {domain} is a top-level domain; browsers refuse such cookies")
            fixes.append("use your own apex, e.g. .example.com")
        if uncovered:
            problems.append(f"COOKIE_DOMAIN {domain} does not cover {', '.join(uncovered)}")
            fixes.append("use subdomains of one apex for both sites and set COOKIE_DOMAIN to .<apex>")
    if problems:
        return CheckResult("hostnames", title, "fail", "; ".join(problems), "; ".join(fixes))
    if not ctx.ocpp_host:
        return CheckResult(
            "hostnames",
            title,
            "warn",
            f"customer {s.customer_host} and admin {s.admin_host} share {domain}; OCPP_HOST is not set",
            "set OCPP_HOST (e.g. ocpp.example.com) in .env: Caddy serves chargers' WSS there",
        )
    return CheckResult(
        "hostnames",
        title,
        "ok",
        f"customer {s.customer_host}, admin {s.admin_host} (cookie {domain}), OCPP {ctx.ocpp_host}",
    )


# --- network ----------------------------------------------------------------------


def _hosts_to_resolve(ctx: DoctorContext) -> list[str]:
    s = ctx.settings
    hosts = [s.customer_host, s.admin_host, ctx.ocpp_host or ""]
    if s.CF_EMAIL_WORKER_URL:
        hosts.append((urlsplit(s.CF_EMAIL_WORKER_URL).hostname or "").lower())
    hosts.append((urlsplit(s.LAGO_API_URL).hostname or "").lower())
    return list(dict.fromkeys(h for h in hosts if h))


async def check_dns(ctx: DoctorContext) -> CheckResult:
    """Every hostname the deployment serves or calls resolves."""
    title = "DNS"
    hosts = _hosts_to_resolve(ctx)

    async def one(host: str) -> tuple[str, list[str] | str]:
        try:
            return host, await asyncio.wait_for(ctx.resolve(host), ctx.timeout)
        except TimeoutError:
            return host, f"no answer in {ctx.timeout:g} s"
        except OSError as exc:
            return host, exc.strerror or str(exc)

    answers = await asyncio.gather(*(one(h) for h in hosts))
    bad = [f"{h} ({a})" for h, a in answers if isinstance(a, str) or not a]
    if bad:
        return CheckResult(
            "dns",
            title,
            "fail",
            "does not resolve: " + ", ".join(bad),
            "create A/AAAA records for these names pointing at your host(s), then wait for them "
            "to propagate (`dig +short NAME` shows the answer)",
        )
    shown = ", ".join(f"{h} -> {' '.join(a)}" for h, a in answers if not isinstance(a, str))
    return CheckResult("dns", title, "ok", shown)


async def check_lago_reachable(ctx: CheckContext) -> CheckResult:
    """Outbound HTTPS to Lago answers (any HTTP status below 500, as the guide's curl)."""
    url = ctx.settings.LAGO_API_URL
    title = "Outbound HTTPS to Lago"
    fix = "allow outbound HTTPS (443) from this host to Lago; check LAGO_API_URL and any proxy"
    r = await checks.get(ctx, url, name="lago_reachable", title=title, say="{url}: {error}", fix=fix)
    if isinstance(r, CheckResult):
        return r
    if r.status_code >= 500:
        return CheckResult(
            "lago_reachable", title, "warn", f"{url} answered {r.status_code}", "Lago has trouble; retry later"
        )
    return CheckResult("lago_reachable", title, "ok", f"{url} answered {r.status_code}")


def _api_v1_note(s: Settings) -> str:
    """Said when LAGO_API_URL carries /api/v1 (as Lago's OpenAPI spec lists its server)."""
    if lago_api_root(s.LAGO_API_URL) == s.LAGO_API_URL.strip().rstrip("/"):
        return ""
    return (
        f"; LAGO_API_URL ends in /api/v1, which Polaris appends itself: it uses "
        f"{lago_api_root(s.LAGO_API_URL)} (you may drop /api/v1 from the setting)"
    )


async def check_lago_metric(ctx: CheckContext) -> CheckResult:
    """The Lago API key is accepted and the billable metric LAGO_METRIC_CODE exists."""
    s = ctx.settings
    code = s.LAGO_METRIC_CODE
    title = "Lago API key and metric"
    key = _secret(s, "LAGO_API_KEY")
    if not key:
        return CheckResult(
            "lago_metric", title, "fail", "LAGO_API_KEY is not set", "copy an API key from Lago's developer settings"
        )
    url = f"{s.lago_api_root}/api/v1/billable_metrics/{quote(code, safe='')}"
    r = await checks.get(
        ctx, url, name="lago_metric", title=title, say="{error}", fix="see the outbound HTTPS check",
        headers={"Authorization": f"Bearer {key}"},
    )
    if isinstance(r, CheckResult):
        return r
    if r.status_code == 200:
        try:
            metric = r.json().get("billable_metric") or {}
        except ValueError:
            metric = {}
        name = metric.get("name")
        return CheckResult(
            "lago_metric",
            title,
            "ok",
            f"key accepted; metric {code} exists" + (f" ({name})" if name else "") + _api_v1_note(s),
        )
    if r.status_code in (401, 403):
        return CheckResult(
            "lago_metric",
            title,
            "fail",
            f"Lago refused LAGO_API_KEY (HTTP {r.status_code})",
            "copy the API key again from Lago's developer settings (of the right organization)",
        )
    if r.status_code == 404:
        return CheckResult(
            "lago_metric",
            title,
            "fail",
            f"key accepted, but Lago has no billable metric with code {code}",
            f"create a billable metric with code {code} in Lago (aggregation: sum of property 'value'), "
            "or set LAGO_METRIC_CODE to the code you use",
        )
    return CheckResult(
        "lago_metric", title, "fail", f"Lago answered HTTP {r.status_code} for {url}", "retry; check LAGO_API_URL"
    )


async def check_email_worker(ctx: DoctorContext) -> CheckResult:
    """The email worker's GET /health answers 200."""
    s = ctx.settings
    title = "Email worker"
    if not s.CF_EMAIL_WORKER_URL:
        return CheckResult(
            "email_worker",
            title,
            "warn",
            "CF_EMAIL_WORKER_URL is not set: mail waits in the outbox until it is",
            "deploy the email worker and set CF_EMAIL_WORKER_URL and CF_EMAIL_WORKER_SECRET",
        )
    if s.email_sender_problem():
        return CheckResult(
            "email_worker",
            title,
            "fail",
            s.email_sender_problem() or "",
            "set EMAIL_FROM (customer mail) and EMAIL_FROM_ADMIN (operator mail) to senders the worker allows",
        )
    url = s.CF_EMAIL_WORKER_URL.rstrip("/") + "/health"
    fix = "check CF_EMAIL_WORKER_URL and that the worker is deployed (`wrangler deploy`)"
    r = await checks.get(ctx, url, name="email_worker", title=title, say="{url}: {error}", fix=fix)
    if isinstance(r, CheckResult):
        return r
    if r.status_code != 200:
        return CheckResult(
            "email_worker",
            title,
            "fail",
            f"{url} answered HTTP {r.status_code}",
            "check the worker's logs in Cloudflare (`wrangler tail`)",
        )
    return CheckResult("email_worker", title, "ok", f"{url} answered 200")


# --- this host --------------------------------------------------------------------


async def check_postgres(ctx: DoctorContext) -> CheckResult:
    """Postgres in DATABASE_URL answers; report its version and whether migrations are current."""
    title = "Postgres"
    url = ctx.settings.database_url
    if not url:
        return CheckResult(
            "postgres", title, "fail", "DATABASE_URL is not set", "set DATABASE_URL (docker-compose.yml sets it for you)"
        )
    try:
        conn = await connect(url, timeout=ctx.timeout)
    except Exception as exc:  # any connect failure is one line for a person
        return CheckResult(
            "postgres",
            title,
            "fail",
            describe_connect_error(exc),
            "start Postgres (`docker compose up -d postgres`) and check host, user and password in DATABASE_URL",
        )
    try:
        version = await conn.fetchval("SHOW server_version")
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        try:
            pending = await pending_migrations(conn)
        except MigrationError as exc:
            return CheckResult("postgres", title, "fail", f"PostgreSQL {version}; {exc}", "see docs/upgrades.md")
    finally:
        await conn.close()
    if major < MIN_POSTGRES_MAJOR:
        return CheckResult(
            "postgres",
            title,
            "fail",
            f"PostgreSQL {version} is older than {MIN_POSTGRES_MAJOR}",
            f"upgrade Postgres to {MIN_POSTGRES_MAJOR} or newer",
        )
    if pending:
        return CheckResult(
            "postgres",
            title,
            "warn",
            f"PostgreSQL {version}; {len(pending)} migration(s) not applied yet",
            "`docker compose up -d` applies them (the one-shot migrate service), or run `polaris migrate`",
        )
    return CheckResult("postgres", title, "ok", f"PostgreSQL {version}; schema is current")


def _mem_total_bytes(meminfo: Path) -> int | None:
    for line in meminfo.read_text().splitlines():
        m = re.match(r"MemTotal:\s+(\d+)\s+kB", line)
        if m:
            return int(m[1]) * 1024
    return None


async def check_memory(ctx: DoctorContext) -> CheckResult:
    """At least 4 GB of RAM (the guide's minimum for Postgres and the services on one host)."""
    title = "Memory"
    try:
        total = _mem_total_bytes(ctx.meminfo)
    except OSError as exc:
        return CheckResult("memory", title, "warn", f"cannot read {ctx.meminfo}: {exc.strerror}", "check RAM by hand: free -g")
    if total is None:
        return CheckResult("memory", title, "warn", f"no MemTotal in {ctx.meminfo}", "check RAM by hand: free -g")
    gib = total / 2**30
    if total < MIN_MEMORY_BYTES:
        return CheckResult(
            "memory",
            title,
            "fail",
            f"{gib:.1f} GiB RAM, less than the 4 GB minimum",
            "resize the host to 4 GB or more, or put Postgres on its own host (docs/install.md, split host)",
        )
    return CheckResult("memory", title, "ok", f"{gib:.1f} GiB RAM")


def _run_version(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return p.returncode, (p.stdout or p.stderr).strip()


async def check_docker(ctx: DoctorContext) -> CheckResult:
    """Docker Engine 24+ and the compose v2 plugin, when Docker is on this host."""
    title = "Docker and compose"
    docker = shutil.which("docker", path=ctx.search_path)
    if docker is None:
        return CheckResult(
            "docker",
            title,
            "warn",
            "docker is not on this host's PATH (expected when doctor runs inside a container)",
            "on the deployment host install Docker Engine 24+ with the compose plugin",
        )
    timeout = min(ctx.timeout, 10.0)
    rc, out = await asyncio.to_thread(_run_version, [docker, "--version"], timeout)
    m = re.search(r"version (\d+)\.(\d+)", out)
    if rc != 0 or not m:
        return CheckResult("docker", title, "fail", f"`docker --version` failed: {out[:200]}", "reinstall Docker Engine")
    engine = f"{m[1]}.{m[2]}"
    rc, out = await asyncio.to_thread(_run_version, [docker, "compose", "version"], timeout)
    cm = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out) if rc == 0 else None
    if cm is None:
        return CheckResult(
            "docker",
            title,
            "fail",
            f"Docker {engine}, but `docker compose version` failed",
            "install the compose plugin (Debian/Ubuntu: apt-get install docker-compose-plugin)",
        )
    compose = ".".join(cm.groups())
    if int(m[1]) < MIN_DOCKER_MAJOR or int(cm[1]) < 2:
        return CheckResult(
            "docker",
            title,
            "fail",
            f"Docker {engine}, compose {compose}",
            f"upgrade to Docker Engine {MIN_DOCKER_MAJOR}+ with compose v2",
        )
    return CheckResult("docker", title, "ok", f"Docker {engine}, compose {compose}")


# --- running them -----------------------------------------------------------------

CHECKS: tuple[Callable[[DoctorContext], Awaitable[CheckResult]], ...] = (
    check_settings,
    check_secret_strength,
    check_hostnames,
    check_dns,
    check_lago_reachable,
    check_lago_metric,
    check_email_worker,
    check_postgres,
    check_memory,
    check_docker,
)


async def run_checks(ctx: DoctorContext) -> list[CheckResult]:
    """Every check, concurrently, in the checklist's order."""
    return await checks.run_checks(CHECKS, ctx)


def blocking(results: list[CheckResult]) -> bool:
    return any(r.status == "fail" for r in results)


def as_json(results: list[CheckResult]) -> dict:
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "warn", "fail")}
    return {"ready": not blocking(results), "counts": counts, "checks": [asdict(r) for r in results]}


def render_text(results: list[CheckResult]) -> str:
    marks = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]"}
    lines = ["Polaris Express: ready to deploy?", ""]
    lines += checklist_lines(results, marks)
    data = as_json(results)["counts"]
    lines.append("")
    summary = f"{data['ok']} ok, {data['warn']} warning(s), {data['fail']} failed"
    if data["fail"]:
        lines.append(summary + ": fix the FAIL lines, then run `polaris doctor` again.")
    else:
        lines.append(summary + ": ready.")
    return "\n".join(lines) + "\n"
