"""Who may open an OCPP connection: path, subprotocol and credentials, before the upgrade.

Chargers connect to `/ocpp/{chargeBoxId}` or SteVe's
`/steve/websocket/CentralSystemService/{chargeBoxId}` (the id may be percent-encoded).
`Admission.process_request` (websockets' hook, run before the WebSocket upgrade) decides:
  - `/healthz` -> 200 (liveness, no auth);
  - a path we do not serve -> 404;
  - a client offering WebSocket subprotocols, none of them one we speak -> 400 saying which
    we speak; a client offering NO subprotocol is accepted with the default version
    (OCPP 1.6J): several chargers in the field (Grizzl-E and others) never send the header,
    and refusing them helps nobody;
  - HTTP Basic (security profiles 1 and 2): username = charge box id, password = the
    charger's key; missing, wrong, mismatched or unknown -> 401 with `WWW-Authenticate`;
    with OCPP_UNKNOWN_CHARGERS=pending an unknown id is registered as Pending, its first
    password becoming its key.
Verified credentials are cached (`AUTH_CACHE_FRESH_S` fresh; used stale while the database
is down), so known chargers reconnect during a database outage. The admitted charger and
its version ride on the connection (`admitted(connection)`) to the server's handler.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

import asyncpg
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from polaris.config import Settings
from polaris.db.errors import RepoError
from polaris.db.repos import charge_boxes
from polaris.keys import verify_charger_key
from polaris.logs import get_logger
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.session import ChargerAuth, Session
from polaris.ocpp.versions import Versions

log = get_logger(__name__)

PATH_PREFIXES = ("/ocpp/", "/steve/websocket/CentralSystemService/")
AUTH_CACHE_FRESH_S = 30.0
LOOKUP_TIMEOUT_S = 8.0  # within websockets' 10 s opening handshake


@dataclass(slots=True)
class Admitted:
    """What admission hands to the connection handler."""

    auth: ChargerAuth
    session: type[Session]  # the negotiated version's handler class


def admitted(connection: ServerConnection) -> Admitted:
    return connection.polaris_admitted  # type: ignore[attr-defined]


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


class Admission:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, versions: Versions):
        self.settings = settings
        self.pool = pool
        self.versions = versions
        self._cache: dict[str, ChargerAuth] = {}

    def forget(self) -> None:
        """Drop every cached credential: the next connection of each charger looks it up."""
        self._cache.clear()

    # --- websockets hooks ----------------------------------------------------------------

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
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
        version = self.versions.negotiate(offered)
        if version is None:
            log.info("refused: no subprotocol we speak", charge_box_id=charge_box_id, offered=offered[:4])
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                f"This central system speaks {self.versions.describe()}: offer WebSocket subprotocol "
                f"{' or '.join(self.versions.subprotocols)} (offered: {', '.join(offered[:4])})\n",
            )
        auth = await self._admit(charge_box_id, request.headers)
        if isinstance(auth, Response):
            if auth.status_code == 401:
                return _unauthorized(connection, auth.reason_phrase)
            return connection.respond(auth.status_code, auth.reason_phrase + "\n")
        connection.polaris_admitted = Admitted(auth, version)  # type: ignore[attr-defined]
        return None

    def select_subprotocol(self, connection: ServerConnection, offered: Sequence[str]) -> str | None:
        # Offers with none we speak were refused in process_request; no offer at all: no header.
        version = self.versions.negotiate(list(offered))
        return version.SUBPROTOCOL if version is not None and version.SUBPROTOCOL in offered else None

    # --- credentials ---------------------------------------------------------------------

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
            return await self._register_pending(charge_box_id, password, refuse)
        if not auth.active:
            return refuse("charge box is disabled")
        if auth.key_hash is None or auth.key_salt is None:
            return refuse("charge box has no key set")
        if not verify_charger_key(password, auth.key_salt, auth.key_hash):
            return refuse("wrong password")
        return auth

    async def _register_pending(self, charge_box_id: str, password: str,
                                refuse: Callable[[str], Response]) -> ChargerAuth | Response:
        try:
            async with self.pool.acquire() as conn:
                row = await charge_boxes.register_pending(conn, charge_box_id, password)
        except RepoError as exc:
            return refuse(f"cannot register: {exc}")
        except DB_UNAVAILABLE:
            return Response(503, "database unavailable", Headers())
        log.info("unknown charger registered as Pending", charge_box_id=charge_box_id)
        auth = ChargerAuth.from_row(row)
        self._cache[charge_box_id] = auth
        return auth

    async def _credentials(self, charge_box_id: str) -> ChargerAuth | Response | None:
        cached = self._cache.get(charge_box_id)
        if cached is not None and time.monotonic() - cached.fetched_at < AUTH_CACHE_FRESH_S:
            return cached
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                async with self.pool.acquire() as conn:
                    row = await charge_boxes.get_credentials(conn, charge_box_id)
        except DB_UNAVAILABLE:
            if cached is not None:
                return cached  # stale but verified before: let known chargers back in
            log.warning("database unavailable; cannot admit unseen charger", charge_box_id=charge_box_id)
            return Response(503, "database unavailable", Headers())
        if row is None:
            self._cache.pop(charge_box_id, None)
            return None
        auth = ChargerAuth.from_row(row)
        self._cache[charge_box_id] = auth
        return auth


def _basic_credentials(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _unauthorized(connection: ServerConnection, why: str) -> Response:
    response = connection.respond(HTTPStatus.UNAUTHORIZED, f"Unauthorized: {why}\n")
    response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
    return response
