"""Calls from the OCPP server to the web process: pre-authorize and meter-values hooks.

Both are signed: header `X-Signature` = lowercase hex HMAC-SHA256 over the raw body, keyed
with the UTF-8 bytes of STEVE_PREAUTH_HMAC_KEY (meter values: STEVE_METERVALUE_HMAC_KEY,
falling back to the pre-authorize key). Both bodies carry `ts` (epoch ms, when sent) and a
random `nonce`: the web refuses a request more than 5 minutes off, or one it has seen. Pre-authorize has a 200 ms budget; after that, or
on any failure, the OCPP server keeps its own decision. Meter values go through a bounded
queue drained by background workers: a slow or absent web process never delays a charger.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import secrets
import time

import aiohttp

from polaris.config import Settings
from polaris.logs import get_logger

log = get_logger(__name__)

PREAUTH_PATH = "/api/ocpp/pre-authorize"
METER_VALUES_PATH = "/api/ocpp/meter-values"
PREAUTH_BUDGET_S = 0.2
METER_QUEUE_SIZE = 10_000
METER_WORKERS = 2


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signed_body(doc: dict) -> bytes:
    """The JSON body of a hook call, stamped now (`ts`, epoch ms) with a fresh `nonce`."""
    nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    return json.dumps({**doc, "ts": int(time.time() * 1000), "nonce": nonce}, separators=(",", ":")).encode()


class Hooks:
    """HTTP client for both hooks; `start()` before use, `close()` at shutdown."""

    def __init__(self, settings: Settings, *, preauth_budget: float = PREAUTH_BUDGET_S):
        base = settings.WEB_INTERNAL_URL.rstrip("/")
        self.preauth_url = base + PREAUTH_PATH
        self.meter_values_url = base + METER_VALUES_PATH
        pre = settings.STEVE_PREAUTH_HMAC_KEY
        mv = settings.metervalue_hmac_key
        self._preauth_key = pre.get_secret_value() if pre else None
        self._meter_key = mv.get_secret_value() if mv else None
        self.preauth_budget = preauth_budget
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[dict] = asyncio.Queue(METER_QUEUE_SIZE)
        self._workers: list[asyncio.Task] = []
        self.dropped = 0  # meter-value posts lost to a full queue or a failed POST
        # Failures by (hook, reason), for /metrics: reason is refused, timeout, error or queue_full.
        self.failures: collections.Counter[tuple[str, str]] = collections.Counter()
        self._last_failure_log = 0.0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(limit=32),
        )
        if self._meter_key:
            self._workers = [asyncio.create_task(self._drain()) for _ in range(METER_WORKERS)]

    async def close(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def pre_authorize(
        self, id_tag: str, charge_box_id: str, connector_id: int | None, is_start_tx: bool
    ) -> str | None:
        """"BLOCKED" when the web process says so; None otherwise (including no answer in time)."""
        if self._session is None or not self._preauth_key:
            return None
        body = signed_body(
            {"idTag": id_tag, "chargeBoxId": charge_box_id, "connectorId": connector_id, "isStartTx": is_start_tx}
        )
        headers = {"Content-Type": "application/json", "X-Signature": sign(self._preauth_key, body)}
        try:
            async with asyncio.timeout(self.preauth_budget):
                async with self._session.post(self.preauth_url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        self.failures["pre-authorize", "refused"] += 1
                        self._log_failure("pre-authorize hook refused", status=resp.status)
                        return None
                    reply = await resp.json(content_type=None)
        except TimeoutError:
            self.failures["pre-authorize", "timeout"] += 1
            self._log_failure("pre-authorize hook over budget", budget_ms=int(self.preauth_budget * 1000))
            return None
        except (aiohttp.ClientError, ValueError) as exc:
            self.failures["pre-authorize", "error"] += 1
            self._log_failure("pre-authorize hook failed", error=exc.__class__.__name__)
            return None
        override = reply.get("override") if isinstance(reply, dict) else None
        return "BLOCKED" if isinstance(override, str) and override.upper() == "BLOCKED" else None

    def meter_values(
        self,
        charge_box_id: str,
        transaction_pk: int | None,
        connector_id: int,
        timestamp: str,
        samples: list[dict],
    ) -> None:
        """Queue one meter-values post; never waits (a full queue drops it and counts)."""
        if not self._workers:
            return
        doc = {
            "chargeBoxId": charge_box_id,
            "transactionPk": transaction_pk,
            "connectorId": connector_id,
            "timestamp": timestamp,
            "samples": samples,
        }
        try:
            self._queue.put_nowait(doc)
        except asyncio.QueueFull:
            self.dropped += 1
            self.failures["meter-values", "queue_full"] += 1
            self._log_failure("meter-values hook queue full", dropped=self.dropped)

    async def _drain(self) -> None:
        assert self._session is not None and self._meter_key
        while True:
            # Stamped when sent, not when queued: a post that waited stays inside the web's window.
            body = signed_body(await self._queue.get())
            headers = {"Content-Type": "application/json", "X-Signature": sign(self._meter_key, body)}
            try:
                async with self._session.post(self.meter_values_url, data=body, headers=headers) as resp:
                    if resp.status >= 300:
                        self.dropped += 1
                        self.failures["meter-values", "refused"] += 1
                        self._log_failure("meter-values hook refused", status=resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.dropped += 1
                reason = "timeout" if isinstance(exc, TimeoutError) else "error"
                self.failures["meter-values", reason] += 1
                self._log_failure("meter-values hook failed", error=exc.__class__.__name__)
            finally:
                self._queue.task_done()

    async def drained(self) -> None:
        """Wait until every queued meter-values post was attempted (tests, shutdown)."""
        await self._queue.join()

    def _log_failure(self, event: str, **kw: object) -> None:
        # One line per 10 s at most: an absent web process must not flood the log.
        now = time.monotonic()
        if now - self._last_failure_log >= 10:
            self._last_failure_log = now
            log.warning(event, url=self.preauth_url.rsplit("/api/", 1)[0], **kw)
