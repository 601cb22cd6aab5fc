"""The OCPP 1.6J central system: WebSocket server, admission, connection registry, shutdown.

Chargers connect to `/ocpp/{chargeBoxId}` or SteVe's
`/steve/websocket/CentralSystemService/{chargeBoxId}` (the id may be percent-encoded).

Admission, before the upgrade (`process_request`):
  - a path we do not serve -> 404;
  - a client offering WebSocket subprotocols but not `ocpp1.6` -> 400 saying which one we speak;
  - a client offering NO subprotocol is accepted as OCPP 1.6J: several chargers in the field
    (Grizzl-E and others) never send the header, and refusing them helps nobody;
  - HTTP Basic (security profiles 1 and 2): username = charge box id, password = the
    charger's key; missing, wrong, mismatched or unknown -> 401 with `WWW-Authenticate`;
    with OCPP_UNKNOWN_CHARGERS=pending an unknown id is registered as Pending, its first
    password becoming its key.
Verified credentials are cached (30 s fresh; used stale while the database is down), so
known chargers reconnect during a database outage.

Keepalive: a WebSocket ping every 60 s, answered within 30 s, so a half-open connection
(a charger that lost power or its modem) is closed within 90 s.

A second connection for the same id replaces the first (the old socket is closed). Last-seen
and heartbeat times are buffered in memory and written in batches every few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from polaris.config import Settings
from polaris.db.errors import RepoError
from polaris.db.repos import charge_boxes, connectors, transactions
from polaris.keys import verify_charger_key
from polaris.logs import get_logger
from polaris.ocpp.charge_point import DB_UNAVAILABLE, ChargePoint
from polaris.ocpp.hooks import Hooks
from polaris.ocpp.metrics import OcppMetrics
from polaris.ocpp.parsing import now_utc
from polaris.ocpp.protocol import warm_schemas
from polaris.ocpp.routing import CommandRouter

log = get_logger(__name__)

SUBPROTOCOL = "ocpp1.6"
PATH_PREFIXES = ("/ocpp/", "/steve/websocket/CentralSystemService/")
AUTH_CACHE_FRESH_S = 30.0
FLUSH_INTERVAL_S = 5.0
CONNECTION_STATE_BATCH_S = 0.1
STUCK_CHECK_INTERVAL_S = 600.0
MAX_MESSAGE_BYTES = 512 * 1024  # a full GetConfiguration or DataTransfer fits; more is abuse


@dataclass(slots=True)
class ChargerAuth:
    pk: int
    charge_box_id: str
    key_salt: bytes | None
    key_hash: bytes | None
    registration_status: str
    active: bool
    fetched_at: float

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ChargerAuth:
        return cls(row["id"], row["charge_box_id"], row["key_salt"], row["key_hash"],
                   row["registration_status"], row["active"], time.monotonic())


def charge_box_id_from_path(path: str) -> str | None:
    path = path.split("?", 1)[0]
    for prefix in PATH_PREFIXES:
        if path.startswith(prefix):
            rest = unquote(path[len(prefix):]).rstrip("/")
            if rest and "/" not in rest and charge_boxes.CHARGE_BOX_ID.match(rest):
                return rest
    return None


def offered_subprotocols(headers: Headers) -> list[str]:
    return [p.strip() for v in headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",") if p.strip()]


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
    ):
        self.settings = settings
        self.pool = pool
        self.instance = instance or socket.gethostname()
        self.response_timeout = response_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.hooks = hooks or Hooks(settings)
        self.connections: dict[str, ChargePoint] = {}
        # vendorId -> async (charge_point, message_id, data) -> (status, data)
        self.data_transfer_handlers: dict[str, Callable[..., Awaitable[tuple[str, Any]]]] = {}
        self._auth_cache: dict[str, ChargerAuth] = {}
        self._seen: dict[int, Any] = {}
        self._heartbeats: dict[int, Any] = {}
        self._deferred_status: list[dict] = []
        self._connection_changes: list[tuple[int, bool, str]] = []
        self._connection_changes_ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._ws_server: Server | None = None
        self._background: list[asyncio.Task] = []
        # Commands for chargers held by other instances (None: this instance serves only its own).
        self.router: CommandRouter | None = CommandRouter(self) if route_commands else None
        self.metrics = OcppMetrics(
            lambda: len(self.connections), lambda: self.hooks.dropped, lambda: self.hooks.failures
        )

    # --- life cycle ------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None) -> Server:
        warm_schemas()
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
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            compression=None,  # permessage-deflate costs ~50 KiB per socket; OCPP frames are small
            max_size=MAX_MESSAGE_BYTES,
            max_queue=4,
            write_limit=16 * 1024,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            server_header=None,
            ssl=ssl_context,
            backlog=4096,
        )
        if self.router is not None:
            self.router.start()
        self._background = [
            asyncio.create_task(self._flush_loop()),
            asyncio.create_task(self._stuck_loop()),
            asyncio.create_task(self._connection_state_loop()),
        ]
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
        for task in [*self._background, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks, return_exceptions=True)
        if self.router is not None:
            await self.router.close()
        await self._write_connection_changes()
        await self._flush()
        try:
            async with self.pool.acquire() as conn:
                await charge_boxes.disconnect_instance(conn, self.instance)
        except DB_UNAVAILABLE:
            pass
        await self.hooks.close()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        """Run follow-up work in a task we keep (cancelled at shutdown, never garbage-collected)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- admission -------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        charge_box_id = charge_box_id_from_path(request.path)
        if charge_box_id is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "Chargers connect to /ocpp/{chargeBoxId} "
                "or /steve/websocket/CentralSystemService/{chargeBoxId}\n",
            )
        offered = offered_subprotocols(request.headers)
        if offered and SUBPROTOCOL not in offered:
            log.info("refused: no ocpp1.6 subprotocol", charge_box_id=charge_box_id, offered=offered[:4])
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                f"This central system speaks OCPP 1.6J: offer WebSocket subprotocol {SUBPROTOCOL} "
                f"(offered: {', '.join(offered[:4])})\n",
            )
        auth = await self._admit(charge_box_id, request.headers)
        if isinstance(auth, Response):
            if auth.status_code == 401:
                return _unauthorized(connection, auth.reason_phrase)
            return connection.respond(auth.status_code, auth.reason_phrase + "\n")
        connection.polaris_charger = auth  # type: ignore[attr-defined]
        return None

    async def _admit(self, charge_box_id: str, headers: Headers) -> ChargerAuth | Response:
        def refuse(why: str) -> Response:
            log.info("charger refused", charge_box_id=charge_box_id, reason=why)
            return Response(401, why, Headers())

        header = headers.get("Authorization")
        if not header:
            return refuse("missing credentials")
        credentials = _basic_credentials(header)
        if credentials is None:
            return refuse("malformed Authorization header")
        # Split after the charge box id, not at the first colon: ids may contain ':'.
        if not credentials.startswith(charge_box_id + ":"):
            return refuse("username is not the charge box id")
        password = credentials[len(charge_box_id) + 1:]
        auth = await self._credentials(charge_box_id)
        if isinstance(auth, Response):
            return auth
        if auth is None:
            if self.settings.OCPP_UNKNOWN_CHARGERS != "pending":
                return refuse("unknown charge box")
            try:
                async with self.pool.acquire() as conn:
                    row = await charge_boxes.register_pending(conn, charge_box_id, password)
            except RepoError as exc:
                return refuse(f"cannot register: {exc}")
            except DB_UNAVAILABLE:
                return Response(503, "database unavailable", Headers())
            log.info("unknown charger registered as Pending", charge_box_id=charge_box_id)
            auth = ChargerAuth.from_row(row)
            self._auth_cache[charge_box_id] = auth
            return auth
        if not auth.active:
            return refuse("charge box is disabled")
        if auth.key_hash is None or auth.key_salt is None:
            return refuse("charge box has no key set")
        if not verify_charger_key(password, auth.key_salt, auth.key_hash):
            return refuse("wrong password")
        return auth

    async def _credentials(self, charge_box_id: str) -> ChargerAuth | Response | None:
        cached = self._auth_cache.get(charge_box_id)
        if cached is not None and time.monotonic() - cached.fetched_at < AUTH_CACHE_FRESH_S:
            return cached
        try:
            async with asyncio.timeout(8):  # within websockets' 10 s opening handshake
                async with self.pool.acquire() as conn:
                    row = await charge_boxes.get_credentials(conn, charge_box_id)
        except DB_UNAVAILABLE:
            if cached is not None:
                return cached  # stale but verified before: let known chargers back in
            log.warning("database unavailable; cannot admit unseen charger", charge_box_id=charge_box_id)
            return Response(503, "database unavailable", Headers())
        if row is None:
            self._auth_cache.pop(charge_box_id, None)
            return None
        auth = ChargerAuth.from_row(row)
        self._auth_cache[charge_box_id] = auth
        return auth

    # --- connections -----------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        auth: ChargerAuth = connection.polaris_charger  # type: ignore[attr-defined]
        cp = ChargePoint(self, connection, auth)
        old = self.connections.get(cp.id)
        self.connections[cp.id] = cp
        if old is not None:
            log.info("charger reconnected; old connection replaced", charge_box_id=cp.id)
            old.connection_lost()
            self.spawn(old._connection.close(1000, "replaced by a new connection"))
        self._set_connected(cp, True)
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            cp.connection_lost()
            if self.connections.get(cp.id) is cp:
                del self.connections[cp.id]
                self._set_connected(cp, False)

    def _set_connected(self, cp: ChargePoint, connected: bool) -> None:
        """Queue the connection state; a writer stores many in one statement (reconnect storms)."""
        event = json.dumps({"event": "connected" if connected else "disconnected", "charge_box_id": cp.id})
        self._connection_changes.append((cp.pk, connected, event))
        self._connection_changes_ready.set()

    async def _connection_state_loop(self) -> None:
        while True:
            await self._connection_changes_ready.wait()
            await asyncio.sleep(CONNECTION_STATE_BATCH_S)  # let a storm's changes pile up
            self._connection_changes_ready.clear()
            await self._write_connection_changes()

    async def _write_connection_changes(self) -> None:
        changes, self._connection_changes = self._connection_changes, []
        try:
            async with self.pool.acquire() as conn:
                await charge_boxes.set_connected_many(conn, changes, self.instance)
        except DB_UNAVAILABLE:
            log.warning("connection state not stored: database unavailable", count=len(changes))

    # --- buffered writes -------------------------------------------------------------------

    def saw(self, charge_box_pk: int) -> None:
        self._seen[charge_box_pk] = now_utc()

    def heartbeat(self, charge_box_pk: int) -> None:
        self._heartbeats[charge_box_pk] = now_utc()

    def defer_status(self, record: dict) -> None:
        if len(self._deferred_status) < 100_000:
            self._deferred_status.append(record)

    async def _flush(self) -> None:
        seen, self._seen = self._seen, {}
        beats, self._heartbeats = self._heartbeats, {}
        statuses, self._deferred_status = self._deferred_status, []
        try:
            async with self.pool.acquire() as conn:
                await charge_boxes.touch_seen(conn, seen, beats)
                for i, record in enumerate(statuses):
                    try:
                        await connectors.record_status(conn, **record)
                    except DB_UNAVAILABLE:
                        self._deferred_status[:0] = statuses[i:]
                        raise
        except DB_UNAVAILABLE:
            # Keep what was not written; newer times already in the buffers win.
            for pk, at in seen.items():
                self._seen.setdefault(pk, at)
            for pk, at in beats.items():
                self._heartbeats.setdefault(pk, at)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self._flush()
            except Exception:
                log.exception("buffered write failed")

    async def _stuck_loop(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    ids = await transactions.flag_stuck_transactions(
                        conn, self.settings.OCPP_STUCK_TRANSACTION_HOURS
                    )
                if ids:
                    log.warning("transactions flagged as stuck", transaction_ids=ids[:50], count=len(ids))
            except DB_UNAVAILABLE:
                pass
            except Exception:
                log.exception("stuck-transaction check failed")
            await asyncio.sleep(STUCK_CHECK_INTERVAL_S)


def _basic_credentials(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _select_subprotocol(connection: ServerConnection, offered: Any) -> str | None:
    # Offers without ocpp1.6 were refused in process_request; no offer at all means 1.6.
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def _unauthorized(connection: ServerConnection, why: str) -> Response:
    response = connection.respond(HTTPStatus.UNAUTHORIZED, f"Unauthorized: {why}\n")
    response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
    return response


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
