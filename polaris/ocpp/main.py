"""Run the OCPP server and its command API in one process until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import signal
import socket

from aiohttp import web

from polaris.config import Settings
from polaris.db.pool import create_pool
from polaris.gctune import freeze_startup_objects, tune_gc
from polaris.logs import get_logger
from polaris.ocpp.api import create_app
from polaris.ocpp.server import OcppServer, raise_open_file_limit, tls_context

log = get_logger(__name__)


async def run(settings: Settings, host: str, port: int, api_host: str, api_port: int, *,
              worker: int | None = None) -> None:
    """One server process; `worker` k of `polaris ocpp --workers N` shares both ports with the
    others (SO_REUSEPORT) under its own instance name, so commands are routed between workers
    through Postgres as between instances."""
    tune_gc()
    files = raise_open_file_limit()
    log.info("open-file limit", limit=files)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # min_size=0: the server starts (and admits cached chargers) even if Postgres is down.
    pool = await create_pool(settings.database_url, min_size=0, max_size=20, timeout=5,
                             command_timeout=30, reset=_keep_session)
    instance = f"{socket.gethostname()}:{port}" + (f"/w{worker}" if worker is not None else "")
    server = OcppServer(settings, pool, instance=instance)
    runner = web.AppRunner(create_app(server), access_log=None, handle_signals=False)
    try:
        await server.start(host, port, ssl_context=tls_context(settings), reuse_port=worker is not None)
        # Modules, schemas and the pool live as long as the process: full collections
        # then scan only what chargers create.
        freeze_startup_objects()
        await runner.setup()
        await web.TCPSite(runner, api_host, api_port, reuse_port=worker is not None).start()
        log.info("command api listening", host=api_host, port=api_port, worker=worker)
        await stop.wait()
        log.info("shutting down: closing charger connections")
    finally:
        await runner.cleanup()
        await server.close()
        await pool.close()
    log.info("stopped")


async def _keep_session(conn: object) -> None:
    # asyncpg's default reset (UNLISTEN *, RESET ALL, ...) is a round trip per release; this
    # server never changes session state on pooled connections, so there is nothing to reset.
    return None
