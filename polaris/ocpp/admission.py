"""Who may open an OCPP connection: path, id, subprotocol, security profile, limits, before the upgrade.

Chargers connect to `/ocpp/{chargeBoxId}` or SteVe's
`/steve/websocket/CentralSystemService/{chargeBoxId}` (the id percent-decoded, matched
ignoring case as SteVe does). `Admission.process_request` (websockets' hook, run before the
WebSocket upgrade) decides, in this order:
  - `/healthz` -> 200 (liveness, no auth); a path we do not serve -> 404;
  - an id SteVe would not accept (`= / ( ) < >`, control characters, surrounding spaces,
    over 255 characters) -> 400 saying why;
  - a client offering WebSocket subprotocols, none of them one we speak (`ocpp1.5`) -> 400
    naming the versions we speak; a client offering NO subprotocol gets the default version
    (OCPP 1.6J): several chargers in the field (Grizzl-E and others) never send the header;
    of several offered, the newest we speak wins (ocpp2.0.1 before ocpp1.6);
  - a charger an operator pinned to a version (`ocpp_version_pinned`) that does not offer
    that version's subprotocol -> 400 naming it (checked once its credentials are known);
  - too many open connections from the client's address -> 429; an address or id in
    back-off after failed credentials -> 401 at once, without a database look-up;
  - the charger's security profile: 0 is admitted by id alone, but only at the path
    prefixes of OCPP_PROFILE0_PATHS; 1 and 2 need HTTP Basic (username = charge box id,
    password = its key); wrong or missing -> 401 with `WWW-Authenticate`; 3 is refused;
  - an unknown id: 404 (SteVe's answer) with OCPP_UNKNOWN_CHARGERS=reject, remembered for
    OCPP_UNKNOWN_ID_CACHE_SECONDS; with `pending` it is registered Pending, with `accepted`
    Accepted (SteVe's auto-registration), its first password becoming its key (no password
    at a profile-0 path: profile 0).
A charger brought over from SteVe (`polaris import steve`) proves its first password
against SteVe's bcrypt hash; our key hash replaces it then. A Pending charger's key is not trusted yet: it is never admitted from a stale cache, and a
second claimant with another key is refused, counted on the charger (`rival_claims`) and
logged. The limits themselves live in limits.py. Verified credentials are cached
(`AUTH_CACHE_FRESH_S` fresh; used stale while the database is down, and during an id's
back-off), so known chargers reconnect during a database outage or while someone guesses
their key. The admitted charger, its version and the client's address ride on the
connection (`admitted(connection)`) to the server's handler.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

import asyncpg
import bcrypt
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from polaris.config import Settings
from polaris.db.errors import AlreadyExists, RepoError
from polaris.db.repos import charge_boxes
from polaris.forwarded import client_ip
from polaris.keys import verify_charger_key
from polaris.logs import get_logger
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.limits import (
    Backoff,
    ConnectionCounts,
    NegativeCache,
)
from polaris.ocpp.metrics import OcppMetrics
from polaris.ocpp.session import ChargerAuth, Session
from polaris.ocpp.versions import Versions

log = get_logger(__name__)

PATH_PREFIXES = ("/ocpp/", "/steve/websocket/CentralSystemService/")
AUTH_CACHE_FRESH_S = 30.0
STALE_CACHE_MAX_S = 3600.0  # how old a cached credential may be to admit a charger in back-off
LOOKUP_TIMEOUT_S = 8.0  # within websockets' 10 s opening handshake


@dataclass(slots=True)
class Admitted:
    """What admission hands to the connection handler."""

    auth: ChargerAuth
    session: type[Session]  # the negotiated version's handler class
    address: str  # the client's address, as the per-address limits count it


@dataclass(slots=True)
class Refusal:
    status: int
    why: str
    retry_after: float | None = None


def admitted(connection: ServerConnection) -> Admitted:
    return connection.polaris_admitted  # type: ignore[attr-defined]


def split_path(path: str) -> tuple[str, str] | None:
    """(the prefix served, the percent-decoded charge box id) of a charger URL, or None."""
    path = path.split("?", 1)[0]
    for prefix in PATH_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            if rest.endswith("/"):
                rest = rest[:-1]
            return prefix, unquote(rest)
    return None


def offered_subprotocols(headers: Headers) -> list[str]:
    return [p.strip() for v in headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",") if p.strip()]


class Admission:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, versions: Versions,
                 metrics: OcppMetrics | None = None):
        self.settings = settings
        self.pool = pool
        self.versions = versions
        self.metrics = metrics
        self.profile0_paths = settings.profile0_paths
        self.proxies = settings.trusted_proxies
        self.id_backoff = Backoff(settings.OCPP_AUTH_FAILURES_BEFORE_BACKOFF, settings.OCPP_AUTH_BACKOFF_MAX_SECONDS)
        self.address_backoff = Backoff(settings.OCPP_AUTH_FAILURES_BEFORE_BACKOFF,
                                       settings.OCPP_AUTH_BACKOFF_MAX_SECONDS)
        self.unknown = NegativeCache(settings.OCPP_UNKNOWN_ID_CACHE_SECONDS)
        self.connections = ConnectionCounts(settings.OCPP_MAX_CONNECTIONS_PER_ADDRESS)
        self.lookups = 0  # credential look-ups in the database (the limits exist to save them)
        self._cache: dict[str, ChargerAuth] = {}  # rows looked up, by lower(charge box id)
        self._verified: dict[str, ChargerAuth] = {}  # rows a connection was admitted with

    def forget(self) -> None:
        """Drop every cached credential and unknown id: the next connection of each looks it up."""
        self._cache.clear()
        self._verified.clear()
        self.unknown.clear()

    # --- websockets hooks ----------------------------------------------------------------

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        parts = split_path(request.path)
        if parts is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "Chargers connect to /ocpp/{chargeBoxId} "
                "or /steve/websocket/CentralSystemService/{chargeBoxId}\n",
            )
        prefix, charge_box_id = parts
        problem = charge_boxes.charge_box_id_problem(charge_box_id)
        if problem:
            return self._refused(connection, charge_box_id[:80], "-", Refusal(400, problem))
        offered = offered_subprotocols(request.headers)
        version = self.versions.negotiate(offered)
        if version is None:
            return self._refused(connection, charge_box_id, "-", Refusal(
                400, f"this central system speaks {self.versions.describe()}: offer WebSocket subprotocol "
                     f"{' or '.join(self.versions.subprotocols)} (offered: {', '.join(offered[:4])})"))
        peer = connection.remote_address[0] if connection.remote_address else None
        forwarded = ",".join(request.headers.get_all("X-Forwarded-For")) or None
        address = client_ip(peer, forwarded, self.proxies) or "unknown"
        auth = await self._admit(charge_box_id, prefix, request.headers, address)
        if isinstance(auth, Refusal):
            return self._refused(connection, charge_box_id, address, auth)
        if auth.ocpp_version_pinned:
            # An operator pinned this charger's version: that one, or no connection at all.
            pinned = self.versions.pinned(auth.ocpp_version_pinned, offered)
            if pinned is None:
                wanted = self.versions.by_version(auth.ocpp_version_pinned)
                return self._refused(connection, charge_box_id, address, Refusal(
                    400, f"charge box {auth.charge_box_id} is pinned to OCPP {auth.ocpp_version_pinned}: offer "
                         f"WebSocket subprotocol {wanted.SUBPROTOCOL if wanted else '?'} "
                         f"(offered: {', '.join(offered[:4]) or 'none'})"))
            version = pinned
        connection.polaris_admitted = Admitted(auth, version, address)  # type: ignore[attr-defined]
        return None

    def select_subprotocol(self, connection: ServerConnection, offered: Sequence[str]) -> str | None:
        # Offers with none we speak were refused in process_request; no offer at all: no header.
        charger = getattr(connection, "polaris_admitted", None)
        version = charger.session if charger is not None else self.versions.negotiate(list(offered))
        return version.SUBPROTOCOL if version is not None and version.SUBPROTOCOL in offered else None

    def opened(self, charger: Admitted) -> None:
        self.connections.opened(charger.address)

    def closed(self, charger: Admitted) -> None:
        self.connections.closed(charger.address)

    # --- the decision --------------------------------------------------------------------

    async def _admit(self, charge_box_id: str, prefix: str, headers: Headers,
                     address: str) -> ChargerAuth | Refusal:
        if self.connections.full(address):
            return Refusal(429, f"{self.connections.cap} connections from {address} are open already "
                                "(OCPP_MAX_CONNECTIONS_PER_ADDRESS)", retry_after=60)
        locked = self.address_backoff.locked_for(address)
        if locked:
            return Refusal(401, f"too many failed attempts from {address}; retry in {locked:.0f} s",
                           retry_after=locked)
        key = charge_box_id.lower()
        password = _password(headers, charge_box_id)
        if isinstance(password, Refusal) and password.why == "missing credentials":
            password = None
        locked = self.id_backoff.locked_for(key)
        if locked:
            return self._during_backoff(key, password, locked)
        if key in self.unknown:
            return self._failed(key, address, Refusal(404, f"unknown charge box {charge_box_id}"))
        lookups = self.lookups
        auth = await self._credentials(key)
        if isinstance(auth, Refusal):
            return auth
        if auth is None:
            return await self._unknown(charge_box_id, prefix, password, address)
        from_cache = self.lookups == lookups
        if not auth.active:
            return self._failed(key, address, Refusal(401, "charge box is disabled"))
        if auth.security_profile == 0:
            if prefix not in self.profile0_paths:
                return self._failed(key, address, Refusal(
                    401, f"charge box {auth.charge_box_id} has security profile 0 (no password): it connects "
                         f"at {' or '.join(p + '{chargeBoxId}' for p in self.profile0_paths) or 'no path'}"))
            return self._ok(key, address, auth)
        if auth.security_profile not in charge_boxes.SECURITY_PROFILES:
            return self._failed(key, address, Refusal(
                401, f"security profile {auth.security_profile} is not supported yet"))
        if isinstance(password, Refusal):
            return self._failed(key, address, password)
        if password is None:
            return self._failed(key, address, Refusal(401, "missing credentials"))
        if auth.key_hash is None and auth.steve_key_bcrypt:
            return await self._steve_key(key, address, auth, password)
        if auth.key_hash is None or auth.key_salt is None:
            return self._failed(key, address, Refusal(401, "charge box has no key set"))
        if not verify_charger_key(password, auth.key_salt, auth.key_hash) and from_cache:
            # The key may have changed since we cached it (an operator rotated it): look once more.
            self._cache.pop(key, None)
            fresh = await self._credentials(key)
            if isinstance(fresh, Refusal):
                return fresh
            if fresh is None:
                return await self._unknown(charge_box_id, prefix, password, address)
            auth = fresh
        if (auth.key_hash is None or auth.key_salt is None
                or not verify_charger_key(password, auth.key_salt, auth.key_hash)):
            if auth.registration_status == "Pending":
                await self._rival_claim(auth, address)
                return self._failed(key, address, Refusal(401, "another key already claimed this Pending charger"))
            return self._failed(key, address, Refusal(401, "wrong password"))
        return self._ok(key, address, auth)

    def _during_backoff(self, key: str, password: str | Refusal | None, locked: float) -> ChargerAuth | Refusal:
        """In an id's back-off only a credential verified before gets in; nobody costs a query."""
        cached = self._verified.get(key)
        if (cached is not None and cached.registration_status != "Pending" and cached.active
                and time.monotonic() - cached.fetched_at < STALE_CACHE_MAX_S):
            if cached.security_profile == 0:
                return cached
            if (isinstance(password, str) and cached.key_hash is not None and cached.key_salt is not None
                    and verify_charger_key(password, cached.key_salt, cached.key_hash)):
                return cached
        return Refusal(401, f"too many failed attempts for this charge box; retry in {locked:.0f} s",
                       retry_after=locked)

    async def _unknown(self, charge_box_id: str, prefix: str, password: str | Refusal | None,
                       address: str) -> ChargerAuth | Refusal:
        key = charge_box_id.lower()
        mode = self.settings.OCPP_UNKNOWN_CHARGERS
        if mode == "reject":
            self.unknown.add(key)
            return self._failed(key, address, Refusal(404, f"unknown charge box {charge_box_id}"))
        if isinstance(password, Refusal):
            return self._failed(key, address, password)
        if password is None and prefix not in self.profile0_paths:
            return self._failed(key, address, Refusal(401, "missing credentials"))
        status = "Pending" if mode == "pending" else "Accepted"
        try:
            async with self.pool.acquire() as conn:
                row = await charge_boxes.register_unknown(conn, charge_box_id, password, status)
        except AlreadyExists:
            self._cache.pop(key, None)  # registered meanwhile by another connection: look again
            return Refusal(503, "registration in progress; retry", retry_after=5)
        except RepoError as exc:
            return self._failed(key, address, Refusal(401, f"cannot register: {exc}"))
        except DB_UNAVAILABLE:
            return Refusal(503, "database unavailable", retry_after=30)
        log.info("unknown charger registered", charge_box_id=charge_box_id, registration_status=status,
                 security_profile=row["security_profile"], address=address)
        return self._ok(key, address, ChargerAuth.from_row(row))

    async def _steve_key(self, key: str, address: str, auth: ChargerAuth, password: str) -> ChargerAuth | Refusal:
        """A charger brought over from SteVe: its first password against SteVe's bcrypt hash (in
        a thread: bcrypt is slow on purpose), then our key hash from then on."""
        hashed = auth.steve_key_bcrypt.removeprefix("{bcrypt}").encode()
        try:
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        except ValueError:
            ok = False
        if not ok:
            return self._failed(key, address, Refusal(401, "wrong password"))
        try:
            async with self.pool.acquire() as conn:
                auth.key_salt, auth.key_hash = await charge_boxes.adopt_steve_key(conn, auth.pk, password)
        except DB_UNAVAILABLE:
            return Refusal(503, "database unavailable", retry_after=30)
        auth.steve_key_bcrypt = None
        log.info("charger from SteVe proved its password: our key hash is kept from now on",
                 charge_box_id=auth.charge_box_id)
        return self._ok(key, address, auth)

    async def _rival_claim(self, auth: ChargerAuth, address: str) -> None:
        try:
            async with self.pool.acquire() as conn:
                n = await charge_boxes.record_rival_claim(conn, auth.pk)
        except DB_UNAVAILABLE:
            n = None
        log.warning("second claimant of a Pending charger refused: accept it only if you know which is real",
                    charge_box_id=auth.charge_box_id, address=address, rival_claims=n)

    def _ok(self, key: str, address: str, auth: ChargerAuth) -> ChargerAuth:
        self.id_backoff.succeeded(key)
        self.address_backoff.succeeded(address)
        self.unknown.discard(key)
        self._cache[key] = self._verified[key] = auth
        return auth

    def _failed(self, key: str, address: str, refusal: Refusal) -> Refusal:
        self.id_backoff.failed(key)
        seconds = self.address_backoff.failed(address)
        if seconds:
            log.warning("client address in back-off after failed charger credentials", address=address,
                        seconds=round(seconds))
        return refusal

    async def _credentials(self, key: str) -> ChargerAuth | Refusal | None:
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached.fetched_at < AUTH_CACHE_FRESH_S:
            return cached
        self.lookups += 1
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                async with self.pool.acquire() as conn:
                    row = await charge_boxes.get_credentials(conn, key)
        except DB_UNAVAILABLE:
            verified = self._verified.get(key)
            if verified is not None and verified.registration_status != "Pending":
                return verified  # stale but verified before: let known chargers back in
            log.warning("database unavailable; cannot admit unseen charger", charge_box_id=key)
            return Refusal(503, "database unavailable", retry_after=30)
        if row is None:
            self._cache.pop(key, None)
            self._verified.pop(key, None)
            return None
        auth = ChargerAuth.from_row(row)
        self._cache[key] = auth
        return auth

    # --- answers -------------------------------------------------------------------------

    def _refused(self, connection: ServerConnection, charge_box_id: str, address: str,
                 refusal: Refusal) -> Response:
        log.info("charger refused", charge_box_id=charge_box_id, address=address, status=refusal.status,
                 reason=refusal.why)
        if self.metrics is not None:
            self.metrics.refused.labels(str(refusal.status)).inc()
        status = HTTPStatus(refusal.status)
        if refusal.status == 401:
            response = connection.respond(status, f"Unauthorized: {refusal.why}\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        else:
            response = connection.respond(status, f"{status.phrase}: {refusal.why}\n")
        if refusal.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(refusal.retry_after)))
        return response


def _password(headers: Headers, charge_box_id: str) -> str | Refusal:
    """The Basic password for `charge_box_id`, or why there is none we can use."""
    header = headers.get("Authorization")
    if not header:
        return Refusal(401, "missing credentials")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return Refusal(401, "malformed Authorization header")
    try:
        credentials = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return Refusal(401, "malformed Authorization header")
    # Split after the charge box id, not at the first colon: ids may contain ':'.
    n = len(charge_box_id)
    user, sep, password = credentials[:n], credentials[n:n + 1], credentials[n + 1:]
    if sep != ":" or user.lower() != charge_box_id.lower():
        return Refusal(401, "username is not the charge box id")
    return password
