"""The OCPP central system: one process's WebSocket server and registry of connections.

`OcppServer` wires the parts and holds the registry; each part is its own module:
  - admission.py: path, subprotocol and credentials, before the upgrade;
  - session.py + v16/ + v201/: one connection, with the handlers of its OCPP version, which map
    the version's messages onto core.py;
  - context.py: what a connection may use (handed to it instead of this server);
  - presence.py: last-seen, heartbeat and connection-state buffers, written in batches;
  - jobs.py + maintenance.py: the maintenance jobs this server runs; load_control.py: site
    load management (one instance per site), sending limits through charging_limits.py;
  - commands.py + routing.py: commands to chargers, here or through another instance.

Keepalive: a WebSocket ping every 60 s, answered within 30 s, so a half-open connection
(a charger that lost power or its modem) is closed within 90 s. A second connection for
the same id replaces the first (the old socket is closed).
"""

from __future__ import annotations

import resource
import socket
import ssl

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from polaris.config import Settings
from polaris.db.repos import charge_boxes
from polaris.logs import get_logger
from polaris.ocpp import maintenance
from polaris.ocpp.admission import Admission, admitted
from polaris.ocpp.context import DataTransferHandler, OcppContext
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.hooks import Hooks
from polaris.ocpp.jobs import JobRunner
from polaris.ocpp.journal import Journal
from polaris.ocpp.load_control import LoadController
from polaris.ocpp.metrics import OcppMetrics
from polaris.ocpp.presence import Presence
from polaris.ocpp.routing import CommandRouter
from polaris.ocpp.session import Session
from polaris.ocpp.v16 import ChargePoint as ChargePoint16
from polaris.ocpp.v201 import ChargePoint as ChargePoint201
from polaris.ocpp.versions import Versions

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 512 * 1024  # a full GetConfiguration or DataTransfer fits; more is abuse
# The versions this server speaks (newest first) and the one for chargers offering none.
VERSIONS = Versions(supported=(ChargePoint201, ChargePoint16), default=ChargePoint16)


class OcppServer:
    """Everything one `polaris ocpp` process holds; `start()`, then `close()` at shutdown."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        instance: str | None = None,
        response_timeout: float = 30.0,
        # A half-open socket is found within ping_interval + ping_timeout (90 s). A 30 s
        # interval meant 333 pings a second at 10,000 chargers for the same guarantee within
        # a minute; chargers heartbeat and send meter values on their own anyway.
        ping_interval: float | None = 60.0,
        ping_timeout: float | None = 30.0,
        hooks: Hooks | None = None,
        route_commands: bool = True,
        versions: Versions = VERSIONS,
    ):
        instance = instance or socket.gethostname()
        hooks = hooks or Hooks(settings)
        self.versions = versions
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connections: dict[str, Session] = {}
        self.ctx = OcppContext(
            settings=settings,
            pool=pool,
            instance=instance,
            hooks=hooks,
            metrics=OcppMetrics(lambda: len(self.connections), lambda: hooks.dropped, lambda: hooks.failures),
            presence=Presence(pool, instance),
            journal=Journal(pool),
            response_timeout=response_timeout,
        )
        self.admission = Admission(settings, pool, versions, self.ctx.metrics)
        self.jobs = JobRunner()
        for job in [*self.ctx.presence.jobs(), *self.ctx.journal.jobs(), maintenance.stuck_transactions(self.ctx)]:
            self.jobs.add(job)
        # Site load management (a job; one instance holds each site: load_control.py).
        self.load_control: LoadController | None = None
        if settings.LOADMGMT_ENABLED:
            self.load_control = LoadController(self)
            self.jobs.add(self.load_control.job())
        # Commands for chargers held by other instances (None: this instance serves only its own).
        self.router: CommandRouter | None = CommandRouter(self) if route_commands else None
        self._ws_server: Server | None = None

    # What the command API and tests read; connections reach these through their context.
    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.pool

    @property
    def instance(self) -> str:
        return self.ctx.instance

    @property
    def hooks(self) -> Hooks:
        return self.ctx.hooks

    @property
    def metrics(self) -> OcppMetrics:
        return self.ctx.metrics

    @property
    def presence(self) -> Presence:
        return self.ctx.presence

    @property
    def data_transfer_handlers(self) -> dict[str, DataTransferHandler]:
        """vendorId -> async (session, message_id, data) -> (status, data)."""
        return self.ctx.data_transfer_handlers

    # --- life cycle ------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                    reuse_port: bool = False) -> Server:
        """Listen; with `reuse_port` several worker processes share the port (SO_REUSEPORT)."""
        for version in self.versions.supported:
            version.warm()
        await self.hooks.start()
        try:
            async with self.pool.acquire() as conn:
                n = await charge_boxes.disconnect_instance(conn, self.instance)
            if n:
                log.info("chargers left connected by a previous run reset", count=n)
        except DB_UNAVAILABLE:
            log.warning("database unavailable at start; known chargers are admitted once it is back")
        self._ws_server = await serve(
            self._handle,
            host,
            port,
            process_request=self.admission.process_request,
            select_subprotocol=self.admission.select_subprotocol,
            compression=None,  # permessage-deflate costs ~50 KiB per socket; OCPP frames are small
            max_size=MAX_MESSAGE_BYTES,
            max_queue=4,
            write_limit=16 * 1024,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            server_header=None,
            ssl=ssl_context,
            backlog=4096,
            reuse_port=reuse_port or None,
        )
        if self.router is not None:
            self.router.start()
        self.jobs.start()
        log.info("ocpp server listening", host=host, port=self.port, tls=ssl_context is not None)
        return self._ws_server

    @property
    def port(self) -> int:
        assert self._ws_server is not None
        return self._ws_server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Close every socket (1001 going away), finish buffered writes, stop background work."""
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
        await self.jobs.close()
        if self.load_control is not None:
            await self.load_control.close()
        await self.ctx.tasks.cancel()
        if self.router is not None:
            await self.router.close()
        await self.presence.write_connection_changes()
        await self.presence.flush()
        await self.ctx.journal.flush()
        try:
            async with self.pool.acquire() as conn:
                await charge_boxes.disconnect_instance(conn, self.instance)
        except DB_UNAVAILABLE:
            pass
        await self.hooks.close()

    # --- the registry ----------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        charger = admitted(connection)
        cp = charger.session(self.ctx, connection, charger.auth)
        self.admission.opened(charger)
        old = self.connections.get(cp.id)
        self.connections[cp.id] = cp
        log.info("charger connected", charge_box_id=cp.id, address=charger.address, ocpp=cp.OCPP_VERSION,
                 security_profile=cp.auth.security_profile, replaces_old=old is not None)
        if old is not None:
            old.connection_lost()
            self.ctx.spawn(old.close(1000, "replaced by a new connection"))
        self.presence.connected(cp.pk, cp.id, True)
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            cp.connection_lost()
            self.admission.closed(charger)
            log.info("charger disconnected", charge_box_id=cp.id, code=connection.close_code,
                     reason=(connection.close_reason or "")[:80])
            if self.connections.get(cp.id) is cp:
                del self.connections[cp.id]
                self.presence.connected(cp.pk, cp.id, False)


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each charger is one open socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.OCPP_TLS_CERT and settings.OCPP_TLS_KEY):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2
    ctx.load_cert_chain(str(settings.OCPP_TLS_CERT), str(settings.OCPP_TLS_KEY))
    return ctx
