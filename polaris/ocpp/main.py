"""Run the OCPP server and its command API in one process until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import time

from aiohttp import web

from polaris.config import Settings
from polaris.db.pool import create_pool
from polaris.logs import get_logger
from polaris.ocpp.api import create_app
from polaris.ocpp.server import OcppServer, raise_open_file_limit, tls_context

log = get_logger(__name__)


async def run(settings: Settings, host: str, port: int, api_host: str, api_port: int) -> None:
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
    server = OcppServer(settings, pool, instance=f"{socket.gethostname()}:{port}")
    runner = web.AppRunner(create_app(server), access_log=None, handle_signals=False)
    try:
        await server.start(host, port, ssl_context=tls_context(settings))
        # Modules, schemas and the pool live as long as the process: move them out of
        # the collector's reach so full collections scan only what chargers create.
        gc.collect()
        gc.freeze()
        await runner.setup()
        await web.TCPSite(runner, api_host, api_port).start()
        log.info("command api listening", host=api_host, port=api_port)
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


SLOW_GC_S = 0.02
# CPython's default (700, 10, 10) collects the young generation every 700 allocations, so
# under load every in-flight call's objects get promoted, and a full collection (~130 ms
# per 1,000 chargers, all of them waiting) followed every few seconds. Young collections
# every 20,000 allocations promote far less (a young collection then takes ~10-20 ms),
# and a full one is considered only every 40 million allocations. Cyclic
# garbage lives longer (refcounting still frees the rest at once): a few MiB at most.
GC_THRESHOLDS = (20_000, 20, 100)


def tune_gc() -> None:
    """Fewer, cheaper collections; log the ones that still stall the event loop."""
    gc.set_threshold(*GC_THRESHOLDS)
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took >= SLOW_GC_S:
            log.warning("slow garbage collection", generation=info["generation"],
                        ms=round(took * 1000, 1), collected=info["collected"])

    gc.callbacks.append(callback)
