"""Container healthcheck: `python -m polaris.ops.healthcheck [web|ocpp|sync]`.

Exit 0 healthy, 1 not. Without a role it reads which `polaris` subcommand PID 1 runs, so
the image's one HEALTHCHECK fits every role; a one-shot command (migrate, doctor, ...)
has nothing to check. Kept to the standard library (plus asyncpg for sync) because
Docker runs it every interval.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("web", "ocpp", "sync")
TIMEOUT = 4.0
# Loopback only: never through an HTTP(S)_PROXY the container may have in its environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def role_of_pid1(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    """The role PID 1 runs (`polaris web` -> web), or None for anything else."""
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in args:
        name = arg.decode(errors="replace")
        if name in ROLES:
            return name
    return None


def _get_ok(url: str) -> tuple[bool, str]:
    try:
        with _OPENER.open(url, timeout=TIMEOUT) as r:
            return r.status == 200, f"{url} -> {r.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} -> {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url} -> {getattr(exc, 'reason', exc)}"


def _port(env: dict[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name) or default)
    except ValueError:
        return default


def _database_answers(url: str | None) -> tuple[bool, str]:
    if not url:
        return False, "DATABASE_URL is not set"
    import asyncio

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=TIMEOUT)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure means unhealthy; say which
        return False, f"database: {exc.__class__.__name__}"
    return True, "database answers"


def check(role: str | None, env: dict[str, str] | None = None) -> tuple[bool, str]:
    env = dict(os.environ) if env is None else env
    if role == "web":
        return _get_ok(f"http://127.0.0.1:{_port(env, 'WEB_PORT', 8000)}/healthz")
    if role == "ocpp":
        return _get_ok(f"http://127.0.0.1:{_port(env, 'OCPP_API_PORT', 8081)}/healthz")
    if role == "sync":
        return _database_answers(env.get("DATABASE_URL"))
    return True, "no long-running role to check"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    role = argv[0] if argv else role_of_pid1()
    if role is not None and role not in ROLES:
        print(f"unknown role {role!r}: use one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    ok, detail = check(role)
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
