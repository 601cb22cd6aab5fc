"""The check runner shared by `polaris doctor` and `polaris health`.

A check is an async function `check_<name>(ctx)` returning a `CheckResult` (ok, warn, fail,
or skip when something it needs is down). `run_checks` runs a list of them concurrently, in
the list's order, with one HTTP client for all of them; each runs guarded, so a check that
hangs past its time limit or raises becomes one failed line instead of a hung command or a
traceback, and one that raises `Skip` becomes a skipped line. `checklist_lines` renders the
results for a terminal; each command adds its own heading, summary and JSON contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from polaris.config import Settings

# "skip": a check that could not run because something it needs is down (`polaris health`
# skips the database's figures while the database is unreachable); doctor never skips.
Status = Literal["ok", "warn", "fail", "skip"]


@dataclass
class CheckResult:
    name: str
    title: str
    status: Status
    message: str
    fix: str = ""


@dataclass
class CheckContext:
    """What every check may use: the settings, the time limit of one probe, the run's HTTP client."""

    settings: Settings
    timeout: float = 10.0
    http: httpx.AsyncClient | None = field(default=None, repr=False, kw_only=True)

    def client(self) -> httpx.AsyncClient:
        assert self.http is not None, "run_checks opens the HTTP client"
        return self.http

    async def close(self) -> None:
        """Release what the checks opened on the way (health's database pool)."""


class Skip(Exception):
    """Raised by a check that cannot run because something it needs is down."""

    def skip_message(self) -> str:
        return f"not checked: {self}"


Ctx = TypeVar("Ctx", bound=CheckContext)
Check = Callable[[Ctx], Awaitable[CheckResult]]


def check_name(check: Callable[..., object]) -> str:
    return check.__name__.removeprefix("check_")


def describe_http_error(exc: httpx.HTTPError) -> str:
    """One line for a person: what went wrong with an HTTP request (the class name at least)."""
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


async def get(
    ctx: CheckContext, url: str, *, name: str, title: str, say: str, fix: str, **kwargs: Any
) -> httpx.Response | CheckResult:
    """GET `url` with the run's client: the response, or the failed result that says why not
    (`say` is the message, with `{url}` and `{error}` filled in)."""
    try:
        return await ctx.client().get(url, **kwargs)
    except httpx.HTTPError as exc:
        return CheckResult(name, title, "fail", say.format(url=url, error=describe_http_error(exc)), fix)


async def guarded(check: Check[Ctx], ctx: Ctx, *, title: str, limit: float) -> CheckResult:
    """Run one check: a hang past `limit` seconds or an exception is a failed line, `Skip` a skipped one."""
    name = check_name(check)
    try:
        return await asyncio.wait_for(check(ctx), limit)
    except TimeoutError:
        return CheckResult(name, title, "fail", f"no answer within {limit:g} s", "the service hangs: read its logs")
    except Skip as exc:
        return CheckResult(name, title, "skip", exc.skip_message())
    except Exception as exc:  # a broken check is one failed line, not a traceback
        return CheckResult(name, title, "fail", f"the check itself failed: {exc.__class__.__name__}: {exc}", "report this")


async def run_checks(
    checks: Sequence[Check[Ctx]],
    ctx: Ctx,
    *,
    titles: Mapping[str, str] | None = None,
    trust_env: bool = True,
) -> list[CheckResult]:
    """Every check, concurrently, in the list's order; an HTTP client is opened for the run
    unless the context brings one (`trust_env=False`: never through a proxy)."""
    own_client = ctx.http is None
    if own_client:
        ctx.http = httpx.AsyncClient(timeout=ctx.timeout, follow_redirects=False, trust_env=trust_env)
    # A check may wait a full timeout for what it needs (a database that refuses late),
    # then take one of its own: two time limits.
    limit = 2 * ctx.timeout + 1
    try:
        return list(
            await asyncio.gather(
                *(guarded(c, ctx, title=(titles or {}).get(check_name(c), check_name(c)), limit=limit) for c in checks)
            )
        )
    finally:
        await ctx.close()
        if own_client and ctx.http is not None:
            await ctx.http.aclose()
            ctx.http = None


def fix_shown(result: CheckResult) -> bool:
    """Whether a result's fix is worth showing: it is not ok (nor skipped) and has one."""
    return result.status not in ("ok", "skip") and bool(result.fix)


def checklist_lines(results: Sequence[CheckResult], marks: Mapping[str, str]) -> list[str]:
    """One line per check (mark, title, message), continuation lines, and a fix for each non-ok one."""
    lines = []
    for r in results:
        first, *more = r.message.splitlines() or [""]
        lines.append(f"{marks[r.status]} {r.title}: {first}")
        lines.extend(f"       {line}" for line in more)
        if fix_shown(r):
            lines.append(f"       fix: {r.fix}")
    return lines
