"""One connected charger, whatever OCPP version it speaks: frames in, handlers, calls out.

The version-neutral core of a connection. A version's handler class (`v16.ChargePoint`, and
later a 2.0.1 one beside it) subclasses `Session` and brings only what differs between
versions: its `@on` handlers, its framing and schema rules (`parse_frame`, `validate_call`,
`unknown_action_error`, `format_violation`), its command table (`OPERATIONS`) and its
WebSocket subprotocol. Everything a handler may touch lives in `self.ctx` (an
`OcppContext`): never the server.

OCPP-J rules kept here for every version:
  - one charger-initiated CALL at a time: the next frame is read when the handler returns,
    so a handler must never `call` the charger itself (it would wait for a reply it cannot
    read); follow-ups go through `ctx.spawn()`, which tracks the task;
  - at most one outgoing CALL per charger: `call_raw` queues the rest;
  - a handler that cannot reach the database answers InternalError: the charger resends;
  - a charger over OCPP_MAX_MESSAGES_PER_SECOND gets GenericError for each CALL over the rate
    (answers to our own calls always pass), with one log line per episode;
  - a charger whose registration is not Accepted (Pending, Rejected) may send only the
    version's `UNREGISTERED_ACTIONS` (its boot, heartbeats, statuses): anything else gets
    SecurityError, so a key claimed on first connection buys nothing until an operator accepts.

Built on the `ocpp` library's routing decorator (`@on`), message classes, payload
dataclasses and case helpers, but not on its ChargePoint class: the library builds a map of
bound methods per instance, ours is built once per class (`ROUTES`), which matters at
10,000 connections; `__slots__` keep each connection small for the same reason.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import GenericError, InternalError, OCPPError, SecurityError
from ocpp.messages import Call, CallError, CallResult

from polaris.logs import get_logger
from polaris.ocpp.errors import (
    DB_UNAVAILABLE,
    CallErrorAnswer,
    ChargerGone,
    FrameError,
    call_error_json,
)
from polaris.ocpp.limits import TokenBucket

if TYPE_CHECKING:
    import asyncpg

    from polaris.ocpp.context import OcppContext
    from polaris.ocpp.operations import Operation

log = get_logger(__name__)

Handler = Callable[..., Any]


@dataclass(slots=True)
class ChargerAuth:
    """The charger as admission found it (its credentials row), kept with its connection."""

    pk: int
    charge_box_id: str
    key_salt: bytes | None
    key_hash: bytes | None
    registration_status: str
    active: bool
    fetched_at: float
    security_profile: int = 1  # 0: admitted by id alone; 1, 2: HTTP Basic with its key
    steve_key_bcrypt: str | None = None  # a key brought over from SteVe, not yet proven
    ocpp_version_pinned: str | None = None  # an operator's pin: the only version it may speak

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ChargerAuth:
        return cls(row["id"], row["charge_box_id"], row["key_salt"], row["key_hash"],
                   row["registration_status"], row["active"], time.monotonic(), row["security_profile"],
                   row["steve_key_bcrypt"], row.get("ocpp_version_pinned"))


_SNAKE_KEYS: dict[str, str] = {}
_SNAKE_KEYS_MAX = 4096  # keys come from chargers (extra properties are tolerated): bounded


def snake_case_keys(data: Any) -> Any:
    """The library's camel_to_snake_case with each key converted once, not by two regexes
    per key per message (~60 us of every MeterValues)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            snake = _SNAKE_KEYS.get(key)
            if snake is None:
                snake = next(iter(camel_to_snake_case({key: None})))
                if len(_SNAKE_KEYS) < _SNAKE_KEYS_MAX:
                    _SNAKE_KEYS[key] = snake
            out[snake] = snake_case_keys(value)
        return out
    if isinstance(data, list):
        return [snake_case_keys(v) for v in data]
    return data


def routes_of(cls: type) -> dict[str, Handler]:
    """Action name -> `@on` handler, for a class and its bases (subclasses override)."""
    routes: dict[str, Handler] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            action = getattr(attr, "_on_action", None)
            if action is not None:
                routes[str(getattr(action, "value", action))] = attr
    return routes


class Session:
    """A charger's connection; a version's handler class fills in the class attributes."""

    # What a version brings (set by the subclass).
    OCPP_VERSION: ClassVar[str] = ""  # "1.6"
    NAME: ClassVar[str] = ""  # "OCPP 1.6J", for people
    SUBPROTOCOL: ClassVar[str] = ""  # "ocpp1.6"
    OPERATIONS: ClassVar[Mapping[str, Operation]] = {}
    ROUTES: ClassVar[dict[str, Handler]] = {}
    # What a charger that is not Accepted may send (a version may widen it): these three are
    # named alike in 1.6 and 2.0.1.
    UNREGISTERED_ACTIONS: ClassVar[frozenset[str]] = frozenset({"BootNotification", "Heartbeat", "StatusNotification"})

    __slots__ = ("id", "pk", "auth", "ctx", "_connection", "_pending", "_call_lock", "current_unique_id",
                 "_bucket", "_limited")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.ROUTES = routes_of(cls)

    def __init__(self, ctx: OcppContext, connection: Any, auth: ChargerAuth):
        self.id = auth.charge_box_id
        self.pk = auth.pk
        self.auth = auth
        self.ctx = ctx
        self._connection = connection
        self._pending: dict[str, asyncio.Future] = {}
        self._call_lock: asyncio.Lock | None = None  # created on the first command
        self.current_unique_id = ""
        rate = ctx.settings.OCPP_MAX_MESSAGES_PER_SECOND
        self._bucket = TokenBucket(rate, rate * 5)
        self._limited = 0  # messages refused in the current episode over the rate

    # --- what differs between versions ---------------------------------------------------

    @staticmethod
    def parse_frame(raw: str | bytes) -> Call | CallResult | CallError:
        """One WebSocket message as a library message object, or raise FrameError."""
        raise NotImplementedError

    @staticmethod
    def validate_call(msg: Call) -> list[str]:
        """Check a CALL against the version's schema (raise OCPPError); the tolerated deviations."""
        raise NotImplementedError

    @staticmethod
    def unknown_action_error(action: str) -> OCPPError:
        raise NotImplementedError

    @staticmethod
    def format_violation(description: str) -> OCPPError:
        """The version's error for a payload it cannot even look at (nested too deeply)."""
        raise NotImplementedError

    @classmethod
    def warm(cls) -> None:
        """Load what the first message would otherwise load with blocking I/O (schemas)."""

    # --- reading frames ------------------------------------------------------------------

    async def start(self) -> None:
        async for raw in self._connection:
            await self.route_message(raw)

    async def route_message(self, raw: str | bytes) -> None:
        within_rate = self._within_rate()
        try:
            msg = self.parse_frame(raw)
        except FrameError as exc:
            if within_rate:
                log.info("malformed frame", charge_box_id=self.id, error=exc.error.code,
                         reason=exc.error.description)
                if exc.unique_id is not None:
                    await self._send(exc.call_error_json())
            return
        self.ctx.presence.saw(self.pk)
        if isinstance(msg, Call):
            if not within_rate:
                self._count(msg.action, "GenericError")
                await self._send(call_error_json(msg.unique_id, GenericError(
                    description=f"rate limit: at most {self._bucket.rate:g} messages per second", details={})))
                return
            if self.auth.registration_status != "Accepted" and msg.action not in self.UNREGISTERED_ACTIONS:
                self._count(msg.action, "SecurityError")
                await self._send(call_error_json(msg.unique_id, SecurityError(
                    description=f"registration is {self.auth.registration_status}: an operator must accept "
                                "this charger first", details={})))
                return
            await self._handle_call(msg)
            return
        future = self._pending.pop(msg.unique_id, None)
        if future is None or future.done():
            log.info("answer to no pending call dropped", charge_box_id=self.id, unique_id=msg.unique_id)
            return
        future.set_result(msg)

    async def _handle_call(self, msg: Call) -> None:
        handler = self.ROUTES.get(msg.action)
        if handler is None:
            error = self.unknown_action_error(msg.action)
            self._count("unknown", error.code)
            await self._send(call_error_json(msg.unique_id, error))
            return
        try:
            try:
                tolerated = self.validate_call(msg)
            except RecursionError:
                raise self.format_violation("payload nested too deeply") from None
        except OCPPError as exc:
            log.info("invalid payload", charge_box_id=self.id, action=msg.action, error=exc.code,
                     reason=exc.description)
            self._count(msg.action, exc.code)
            await self._send(call_error_json(msg.unique_id, exc))
            return
        if tolerated:
            log.info("schema deviations tolerated", charge_box_id=self.id, action=msg.action,
                     deviations=tolerated[:5])
        self.current_unique_id = msg.unique_id  # one CALL at a time per charger: safe to keep here
        try:
            result = await handler(self, **snake_case_keys(msg.payload))
        except OCPPError as exc:
            self._count(msg.action, exc.code)
            await self._send(call_error_json(msg.unique_id, exc))
            return
        except DB_UNAVAILABLE as exc:
            self._count(msg.action, "InternalError")
            log.warning("database unavailable; charger will resend", charge_box_id=self.id,
                        action=msg.action, error=exc.__class__.__name__)
            await self._send(call_error_json(msg.unique_id, InternalError(
                description="the central system could not store this message; please resend",
                details={})))
            return
        except Exception:
            self._count(msg.action, "InternalError")
            log.exception("handler failed", charge_box_id=self.id, action=msg.action)
            await self._send(call_error_json(msg.unique_id, InternalError(
                description="the central system failed to process this message", details={})))
            return
        payload = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
        self._count(msg.action, "ok")
        await self._send(CallResult(msg.unique_id, payload).to_json())

    def _within_rate(self) -> bool:
        """Take a token; log the first refusal of an episode and its end."""
        if self._bucket.take():
            if self._limited:
                log.info("charger back under the message rate", charge_box_id=self.id, refused=self._limited)
                self._limited = 0
            return True
        if not self._limited:
            log.warning("charger over the message rate: answering CALLERROR", charge_box_id=self.id,
                        rate=self._bucket.rate)
        self._limited += 1
        self.ctx.metrics.rate_limited.inc()
        return False

    def _count(self, action: str, outcome: str) -> None:
        self.ctx.metrics.messages.labels(action, outcome).inc()

    async def _send(self, message: str) -> None:
        await self._connection.send(message)

    # --- calling the charger -------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A command is waiting for (or holding) this charger's one outstanding CALL."""
        return self._call_lock is not None and self._call_lock.locked()

    async def call_raw(self, action: str, payload: dict, *, unique_id: str | None = None,
                       answer_timeout: float, queue_timeout: float) -> dict:
        """Send one CALL and return the charger's CALLRESULT payload.

        One outstanding CALL per charger (OCPP-J): later ones wait their turn for at most
        `queue_timeout`. Raises TimeoutError, ChargerGone or CallErrorAnswer.
        """
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        unique_id = unique_id or str(uuid.uuid4())
        async with asyncio.timeout(queue_timeout):
            await self._call_lock.acquire()
        try:
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[unique_id] = future
            try:
                await self._send(Call(unique_id, action, payload).to_json())
                async with asyncio.timeout(answer_timeout):
                    answer = await future
            finally:
                self._pending.pop(unique_id, None)
        finally:
            self._call_lock.release()
        if isinstance(answer, CallError):
            raise CallErrorAnswer(answer.error_code, answer.error_description, answer.error_details)
        return answer.payload

    def connection_lost(self) -> None:
        """Fail calls still waiting for an answer: it will never come on this socket."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChargerGone(f"{self.id} disconnected"))
        self._pending.clear()

    async def close(self, code: int, reason: str) -> None:
        """Close the socket (a newer connection for the same id replaced this one)."""
        await self._connection.close(code, reason)
