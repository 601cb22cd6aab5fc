"""A local fake of Lago's REST API (the parts Polaris uses), with fault injection.

Speaks Lago's real wire format: Bearer auth, `POST /api/v1/events/batch` stored all or
nothing with 422 `validation_errors` and per-index `error_details` (`value_already_exist`
for a transaction_id the subscription has: uniqueness is per subscription), 200 for an
unknown code or subscription (stored, never billed), `GET /api/v1/events` newest first
with pagination `meta`, `GET /api/v1/events/{transaction_id}`, a configurable batch limit
(`too_many_events`), billable metrics, subscriptions, plans, customers and the webhook
public keys (base64 of the PEM, plain and JSON, as Lago serves them). Faults: 500, timeout, 429 with X-RateLimit-Reset, and
"lost" (the batch is stored, then the connection drops before the answer).
Billing periods, usage and webhook signing are in polaris/sim/lago_billing.py.
Used by tests/sync, bench/bench_sync.py, and `polaris up` (as a local stand-in for Lago
when LAGO_API_KEY is unset, so the demo's sync worker bills somewhere real):
`python -m polaris.sim.lago --port 8090 --subscription sub_demo_alice ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from polaris.sim.lago_billing import LagoBilling
from polaris.sim.lago_billing import error as _error

FAULTS = ("500", "timeout", "429", "lost")


def _short_id(tid: str) -> str:
    """`pol_<deployment>_<start>_tx_<id>_final` as tests name it (`steve_tx_<id>_final`)."""
    parts = tid.split("_", 3)
    if tid.startswith("pol_") and len(parts) == 4 and parts[3].startswith("tx_"):
        return "steve_" + parts[3]
    return tid


@dataclass
class Hold:
    """One parked request: `arrived` is set when it comes in; it goes on once `release` is set."""

    method: str
    path: str
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class FakeLago(LagoBilling):
    def __init__(self, *, api_key: str = "lago-test-key", metric_code: str = "ev_charging_kwh"):
        self.api_key = api_key
        self.metrics: dict[str, dict[str, Any]] = {
            metric_code: {
                "lago_id": str(uuid.uuid4()),
                "name": "EV charging",
                "code": metric_code,
                "aggregation_type": "sum_agg",
                "field_name": "value",
                "recurring": False,
                "rounding_function": None,
                "rounding_precision": None,
                "expression": None,
                "weighted_interval": None,
            }
        }
        # Every subscription row: Lago keeps a terminated row beside its successor under the
        # same external_id after a plan change (see `upgrade`).
        self.subscription_rows: list[dict[str, Any]] = []
        # external_id -> invoiced periods (from, to, Wh billed), oldest first
        self.invoiced_periods: dict[str, list[tuple[datetime, datetime, int]]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        # (external_subscription_id, transaction_id) -> event: Lago's uniqueness is per
        # subscription (organization + external_subscription_id), not global.
        self.event_rows: dict[tuple[str, str], dict[str, Any]] = {}
        # Lago's LAGO_EVENTS_BATCH_MAX_LENGTH (a self-hosted Lago may lower it).
        self.batch_max = 100
        # transaction_id -> Lago's errors for it (an event Lago calls invalid)
        self.reject: dict[str, dict[str, list[str]]] = {}
        self.public_key_pem: bytes | None = None
        # Lago's webhook signing: the RSA key (its public half served by the two key
        # endpoints once `webhook_key()` made it) and the organization's HMAC key.
        self.signing_key = None
        self.hmac_key = "lago-hmac-key"
        self.requests: list[tuple[str, str, int]] = []
        self.batches_received = 0
        self.duplicates_refused = 0
        self.timeout_delay = 2.0
        # Seconds every event batch takes (a slow Lago, to catch a worker mid-run).
        self.batch_delay = 0.0
        self.rate_limit_reset = "1"
        self._script: list[str] = []
        self._random_rate = 0.0
        self._random_kinds: tuple[str, ...] = ()
        self._rng = random.Random(0)
        # Crash simulation: at request number N (1-based), before or after Lago does the work,
        # set `crashed` so a test can kill the worker there.
        self.crash_at: tuple[int, str] | None = None
        self.crashed = asyncio.Event()
        self._holds: list[Hold] = []
        self._count = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ control

    def add_plan(self, code: str, *, price_per_kwh: str = "0.35", currency: str = "EUR") -> None:
        metric = next(iter(self.metrics.values()))
        self.plans[code] = {
            "lago_id": str(uuid.uuid4()),
            "name": f"Plan {code}",
            "code": code,
            "interval": "monthly",
            "amount_cents": 0,
            "amount_currency": currency,
            "pay_in_advance": False,
            "charges": [
                {
                    "lago_id": str(uuid.uuid4()),
                    "lago_billable_metric_id": metric["lago_id"],
                    "billable_metric_code": metric["code"],
                    "charge_model": "standard",
                    "pay_in_advance": False,
                    "properties": {"amount": price_per_kwh},
                }
            ],
        }

    def inject(self, *faults: str) -> None:
        """Faults for the next requests, in order (one per request)."""
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}")
        self._script += list(faults)

    def random_faults(self, rate: float, kinds: tuple[str, ...] = FAULTS, seed: int = 0) -> None:
        self._random_rate = rate
        self._random_kinds = kinds
        self._rng = random.Random(seed)

    def hold_next(self, method: str, path: str) -> Hold:
        """Park the next `method path` request until the test releases it (a slow Lago, on cue)."""
        hold = Hold(method.upper(), path)
        self._holds.append(hold)
        return hold

    def clear_faults(self) -> None:
        self._script.clear()
        self._random_rate = 0.0

    def wh_by_subscription(self) -> dict[str, int]:
        """What Lago would bill: the sum of `value` (kWh) per subscription, in Wh."""
        out: dict[str, int] = defaultdict(int)
        for event in self.event_rows.values():
            value = Decimal(str(event["properties"]["value"]))
            out[event["external_subscription_id"]] += int(value * 1000)
        return dict(out)

    # ------------------------------------------------------------------ server

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/api/v1/events/batch", self._batch)
        app.router.add_get("/api/v1/events", self._list_events)
        app.router.add_get("/api/v1/events/{transaction_id}", self._get_event)
        app.router.add_get("/api/v1/billable_metrics/{code}", self._metric)
        app.router.add_get("/api/v1/subscriptions", self._list_subscriptions)
        app.router.add_get("/api/v1/subscriptions/{external_id}", self._subscription)
        app.router.add_get("/api/v1/plans/{code}", self._plan)
        app.router.add_get("/api/v1/customers/{customer}/current_usage", self._current_usage)
        app.router.add_get("/api/v1/customers/{customer}/past_usage", self._past_usage)
        app.router.add_post("/api/v1/customers", self._upsert_customer)
        app.router.add_get("/api/v1/webhooks/public_key", self._public_key)
        app.router.add_get("/api/v1/webhooks/json_public_key", self._json_public_key)
        # Not Lago's: lets a benchmark in another process read what the fake holds.
        app.router.add_get("/_fake/stats", self._stats)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _next_fault(self) -> str | None:
        if self._script:
            return self._script.pop(0)
        if self._random_rate and self._rng.random() < self._random_rate:
            return self._rng.choice(self._random_kinds)
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Unauthorized", "unauthorized")
        self._count += 1
        hold = next((h for h in self._holds if (h.method, h.path) == (request.method, request.path)), None)
        if hold is not None:
            self._holds.remove(hold)
            hold.arrived.set()
            await hold.release.wait()
        if self.crash_at == (self._count, "before"):
            self.crashed.set()
        fault = self._next_fault()
        if fault == "500":
            resp: web.StreamResponse = _error(500, "Internal Server Error", "internal_error")
        elif fault == "429":
            resp = web.json_response(
                {"status": 429, "error": "Too Many Requests", "code": "too_many_requests"},
                status=429,
                headers={"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0",
                         "X-RateLimit-Reset": self.rate_limit_reset},
            )
        elif fault == "timeout":
            await asyncio.sleep(self.timeout_delay)
            resp = _error(500, "Internal Server Error", "timeout")
        elif fault == "lost":
            # Lago did the work; the answer never reaches the client (connection dropped).
            resp = await handler(request)
            if request.transport is not None:
                request.transport.close()
        else:
            resp = await handler(request)
        if self.crash_at == (self._count, "after"):
            self.crashed.set()
        self.requests.append((request.method, request.path, resp.status))
        return resp

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        self.batches_received += 1
        body = await request.json()
        events = body.get("events") or []
        if not events:
            return _error(422, "Unprocessable Entity", "validation_errors", {"events": ["no_events"]})
        if len(events) > self.batch_max:
            return _error(422, "Unprocessable Entity", "validation_errors", {"events": ["too_many_events"]})
        errors: dict[str, dict[str, list[str]]] = {}
        for i, e in enumerate(events):
            problems: dict[str, list[str]] = {}
            tid = e.get("transaction_id")
            if not tid:
                problems["transaction_id"] = ["value_is_mandatory"]
            elif (e.get("external_subscription_id"), tid) in self.event_rows:
                problems["transaction_id"] = ["value_already_exist"]
            rejected = self.reject.get(tid) or self.reject.get(_short_id(tid or ""))
            if rejected:
                problems.update(rejected)
            if not e.get("external_subscription_id"):
                problems["external_subscription_id"] = ["value_is_mandatory"]
            if not e.get("code"):
                problems["code"] = ["value_is_mandatory"]
            if problems:
                errors[str(i)] = problems
        if errors:
            self.duplicates_refused += sum(
                1 for p in errors.values() if p.get("transaction_id") == ["value_already_exist"]
            )
            return _error(422, "Unprocessable Entity", "validation_errors", errors)
        stored = []
        for e in events:
            record = {
                "lago_id": str(uuid.uuid4()),
                "transaction_id": e["transaction_id"],
                "lago_customer_id": None,
                "code": e["code"],
                "timestamp": float(e.get("timestamp") or datetime.now(UTC).timestamp()),
                "properties": e.get("properties") or {},
                "lago_subscription_id": None,
                "external_subscription_id": e["external_subscription_id"],
                "created_at": datetime.now(UTC).isoformat(),
            }
            self.event_rows[(e["external_subscription_id"], e["transaction_id"])] = record
            stored.append(record)
        if self.batch_delay:
            await asyncio.sleep(self.batch_delay)  # stored; the answer is slow to come
        return web.json_response({"events": [self._serialize(r) for r in stored]})

    @staticmethod
    def _serialize(record: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in record.items() if k != "invoiced"},  # the fake's own bookkeeping
            "timestamp": datetime.fromtimestamp(record["timestamp"], UTC).isoformat(),
        }

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "events": len(self.event_rows),
                "batches": self.batches_received,
                "duplicates_refused": self.duplicates_refused,
                "wh_by_subscription": self.wh_by_subscription(),
                "cpu_s": time.process_time(),
            }
        )

    async def _list_events(self, request: web.Request) -> web.Response:
        q = request.query
        sub = q.get("external_subscription_id")
        code = q.get("code")
        t_from = datetime.fromisoformat(q["timestamp_from"]).timestamp() if "timestamp_from" in q else None
        t_to = datetime.fromisoformat(q["timestamp_to"]).timestamp() if "timestamp_to" in q else None
        rows = [
            e
            for e in self.event_rows.values()
            if (sub is None or e["external_subscription_id"] == sub)
            and (code is None or e["code"] == code)
            and (t_from is None or e["timestamp"] >= t_from)
            and (t_to is None or e["timestamp"] <= t_to)
        ]
        rows.sort(key=lambda e: (e["timestamp"], e.get("created_at") or ""), reverse=True)  # Lago: newest first
        page = int(q.get("page", 1))
        per_page = int(q.get("per_page", 100))
        total_pages = max(1, -(-len(rows) // per_page))
        chunk = rows[(page - 1) * per_page : page * per_page]
        return web.json_response(
            {
                "events": [self._serialize(e) for e in chunk],
                "meta": {
                    "current_page": page,
                    "next_page": page + 1 if page < total_pages else None,
                    "prev_page": page - 1 if page > 1 else None,
                    "total_pages": total_pages,
                    "total_count": len(rows),
                },
            }
        )

    async def _get_event(self, request: web.Request) -> web.Response:
        tid = request.match_info["transaction_id"]
        e = next((e for (_, t), e in self.event_rows.items() if t == tid), None)
        if e is None:
            return _error(404, "Not Found", "event_not_found")
        return web.json_response({"event": self._serialize(e)})

    async def _metric(self, request: web.Request) -> web.Response:
        m = self.metrics.get(request.match_info["code"])
        if m is None:
            return _error(404, "Not Found", "billable_metric_not_found")
        return web.json_response({"billable_metric": m})

    async def _plan(self, request: web.Request) -> web.Response:
        p = self.plans.get(request.match_info["code"])
        if p is None:
            return _error(404, "Not Found", "plan_not_found")
        return web.json_response({"plan": p})

    async def _upsert_customer(self, request: web.Request) -> web.Response:
        body = (await request.json()).get("customer") or {}
        if not body.get("external_id"):
            return _error(422, "Unprocessable Entity", "validation_errors",
                          {"external_id": ["value_is_mandatory"]})
        existing = self.customers.get(body["external_id"], {"lago_id": str(uuid.uuid4())})
        existing.update(body)
        self.customers[body["external_id"]] = existing
        return web.json_response({"customer": existing})

async def _serve(host: str, port: int, api_key: str, subscriptions: list[str]) -> None:
    lago = FakeLago(api_key=api_key)
    for external_id in subscriptions:
        lago.add_subscription(external_id)
    url = await lago.start(host, port)
    print(f"local Lago stand-in on {url} (subscriptions: {', '.join(subscriptions) or 'none'})",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await lago.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m polaris.sim.lago",
        description="A local stand-in for Lago's API (demos and tests; keeps everything in memory).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", default="lago-local-key")
    parser.add_argument("--subscription", action="append", default=[], metavar="EXTERNAL_ID",
                        help="an active subscription on a plan priced per kWh (repeatable)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.api_key, args.subscription))


if __name__ == "__main__":
    main()
