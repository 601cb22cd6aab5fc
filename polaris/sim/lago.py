"""A local fake of Lago's REST API (the parts Polaris uses), with fault injection.

Speaks Lago's real wire format: Bearer auth, `POST /api/v1/events/batch` stored all or
nothing with 422 `validation_errors` and per-index `error_details` (`value_already_exist`
for a transaction_id it has), `GET /api/v1/events` with pagination `meta`,
billable metrics, subscriptions, plans, customers and the webhook public key (base64 of
the PEM, as Lago serves it). Faults: 500, timeout, 429 with X-RateLimit-Reset, and
"lost" (the batch is stored, then the connection drops before the answer).
Used by tests/sync, bench/bench_sync.py, and `polaris up` (as a local stand-in for Lago
when LAGO_API_KEY is unset, so the demo's sync worker bills somewhere real):
`python -m polaris.sim.lago --port 8090 --subscription sub_demo_alice ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
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
from joserfc import jwt
from joserfc.jwk import RSAKey

FAULTS = ("500", "timeout", "429", "lost")


def _short_id(tid: str) -> str:
    """`pol_<deployment>_<start>_tx_<id>_final` as tests name it (`steve_tx_<id>_final`)."""
    parts = tid.split("_", 3)
    if tid.startswith("pol_") and len(parts) == 4 and parts[3].startswith("tx_"):
        return "steve_" + parts[3]
    return tid


def _error(status: int, error: str, code: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"status": status, "error": error, "code": code}
    if details is not None:
        body["error_details"] = details
    return web.json_response(body, status=status)


@dataclass
class Hold:
    """One parked request: `arrived` is set when it comes in; it goes on once `release` is set."""

    method: str
    path: str
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class FakeLago:
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
        self.signing_key: RSAKey | None = None
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

    def add_subscription(
        self, external_id: str, *, plan_code: str = "ev_plan", status: str = "active",
        external_customer_id: str | None = None, period_started_at: datetime | None = None,
    ) -> dict[str, Any]:
        """A subscription row; `period_started_at` is its open billing period's start (events
        before it fall in periods already invoiced: stored, never billed)."""
        now = datetime.now(UTC)
        started = period_started_at or datetime(2000, 1, 1, tzinfo=UTC)
        row = {
            "lago_id": str(uuid.uuid4()),
            "external_id": external_id,
            "lago_customer_id": str(uuid.uuid4()),
            "external_customer_id": external_customer_id or f"cust_{external_id}",
            "name": None,
            "plan_code": plan_code,
            "status": status,
            "billing_time": "calendar",
            "started_at": None if status == "pending" else started.isoformat(),
            "terminated_at": None,
            "created_at": now.isoformat(),
            "current_billing_period_started_at": started.isoformat(),
            "current_billing_period_ending_at": None,
        }
        self.subscription_rows.append(row)
        if plan_code not in self.plans:
            self.add_plan(plan_code)
        return row

    @property
    def subscriptions(self) -> dict[str, dict[str, Any]]:
        """external_id -> the row Lago shows by default (the active one, else the newest)."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.subscription_rows:
            have = out.get(row["external_id"])
            if have is None or have["status"] != "active":
                out[row["external_id"]] = row
        return out

    def upgrade(self, external_id: str, plan_code: str, *, period_started_at: datetime | None = None) -> None:
        """A plan change as Lago does it: the active row is terminated, a new active row
        with the same external_id starts (its own billing period)."""
        now = period_started_at or datetime.now(UTC)
        self.close_period(external_id, now)  # the terminated row's usage is invoiced
        for row in self.subscription_rows:
            if row["external_id"] == external_id and row["status"] == "active":
                row["status"] = "terminated"
                row["terminated_at"] = now.isoformat()
        self.add_subscription(external_id, plan_code=plan_code, period_started_at=now)

    def close_period(self, external_id: str, until: datetime) -> None:
        """Lago finalized the invoice of the open period, up to `until`: what it billed is
        frozen (past_usage) and the open period starts at `until`."""
        for row in self.subscription_rows:
            if row["external_id"] == external_id and row["status"] == "active":
                opened = datetime.fromisoformat(row["current_billing_period_started_at"])
                wh = self._usage_wh(row, opened.timestamp(), until.timestamp())
                self.invoiced_periods.setdefault(external_id, []).append((opened, until, wh))
                for (sub, _), e in self.event_rows.items():  # billed on that invoice, for good
                    if sub == external_id and opened.timestamp() <= e["timestamp"] < until.timestamp():
                        e.setdefault("invoiced", self.billed_wh(e))
                row["current_billing_period_started_at"] = until.isoformat()

    def _usage_wh(self, row: dict[str, Any], t_from: float, t_to: float | None) -> int:
        total = 0
        for (sub, _), e in self.event_rows.items():
            if sub == row["external_id"] and e["code"] in self.metrics and e["timestamp"] >= t_from and (
                t_to is None or e["timestamp"] < t_to
            ):
                total += int(Decimal(str(e["properties"].get("value", 0))) * 1000)
        return total

    def _charges_usage(self, wh: int, code: str) -> list[dict[str, Any]]:
        metric = self.metrics[code]
        units = str(Decimal(wh) / 1000)
        return [{"units": units, "events_count": 0, "amount_cents": 0, "amount_currency": "EUR",
                 "billable_metric": {"lago_id": metric["lago_id"], "name": metric["name"], "code": code,
                                     "aggregation_type": metric["aggregation_type"]},
                 "filters": [], "grouped_usage": []}]

    def _customer_row(self, request: web.Request) -> dict[str, Any] | None:
        sub = request.query.get("external_subscription_id", "")
        row = self._billing_row(sub)
        if row is None or row["external_customer_id"] != request.match_info["customer"]:
            return None
        return row

    async def _current_usage(self, request: web.Request) -> web.Response:
        row = self._customer_row(request)
        if row is None:
            return _error(404, "Not Found", "customer_not_found")
        opened = datetime.fromisoformat(row["current_billing_period_started_at"])
        wh = self._usage_wh(row, opened.timestamp(), None)
        code = next(iter(self.metrics))
        return web.json_response({"customer_usage": {
            "from_datetime": opened.isoformat(), "to_datetime": None, "issuing_date": None,
            "currency": "EUR", "amount_cents": 0, "total_amount_cents": 0, "taxes_amount_cents": 0,
            "lago_invoice_id": None, "charges_usage": self._charges_usage(wh, code),
        }})

    async def _past_usage(self, request: web.Request) -> web.Response:
        row = self._customer_row(request)
        if row is None:
            return _error(404, "Not Found", "customer_not_found")
        code = request.query.get("billable_metric_code") or next(iter(self.metrics))
        count = int(request.query.get("periods_count", 3))
        periods = list(reversed(self.invoiced_periods.get(row["external_id"], [])))[:count]
        return web.json_response({"usage_periods": [
            {"from_datetime": f.isoformat(), "to_datetime": t.isoformat(), "issuing_date": t.date().isoformat(),
             "currency": "EUR", "amount_cents": 0, "total_amount_cents": 0, "lago_invoice_id": str(uuid.uuid4()),
             "charges_usage": self._charges_usage(wh, code) if code in self.metrics else []}
            for f, t, wh in periods
        ], "meta": {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1,
                    "total_count": len(periods)}})

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        """transaction_id -> event (tests; ambiguous only if two subscriptions share an id)."""
        return {tid: e for (_, tid), e in self.event_rows.items()}

    def _billing_row(self, external_id: str) -> dict[str, Any] | None:
        return next(
            (r for r in self.subscription_rows if r["external_id"] == external_id and r["status"] == "active"),
            None,
        )

    def billed_wh(self, event: dict[str, Any]) -> int:
        """What Lago bills for one event, in Wh: what an invoice billed for it, else 0 unless
        its code is a metric, its subscription is active and its timestamp is in the open
        billing period (an event timed in an invoiced period is stored and never billed)."""
        if "invoiced" in event:
            return event["invoiced"]
        row = self._billing_row(event["external_subscription_id"])
        if row is None or event["code"] not in self.metrics:
            return 0
        opened = datetime.fromisoformat(row["current_billing_period_started_at"]).timestamp()
        if event["timestamp"] < opened:
            return 0
        return int(Decimal(str(event["properties"].get("value", 0))) * 1000)

    def billed_wh_by_subscription(self) -> dict[str, int]:
        """What Lago bills (invoiced, or in the open period), per subscription, in Wh."""
        out: dict[str, int] = defaultdict(int)
        for event in self.event_rows.values():
            wh = self.billed_wh(event)
            if wh:
                out[event["external_subscription_id"]] += wh
        return dict(out)

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

    def webhook_key(self) -> RSAKey:
        """Lago's RSA webhook key (made on first use; its public half is then served)."""
        if self.signing_key is None:
            self.signing_key = RSAKey.generate_key(2048)
            self.public_key_pem = self.signing_key.as_pem(private=False)
        return self.signing_key

    def sign_webhook(self, payload: dict[str, Any], *, algorithm: str = "jwt") -> tuple[bytes, dict[str, str]]:
        """A webhook as Lago sends it: (body, headers), signed by JWT or HMAC.

        As lago-api's SendHttpWebhookService: the body is `payload.to_json`; JWT is RS256 over
        `{data: body, iss: LAGO_API_URL}` (no iat/exp); HMAC is base64 HMAC-SHA256 of the body.
        """
        body = json.dumps(payload).encode()
        if algorithm == "jwt":
            signature = jwt.encode({"alg": "RS256"}, {"data": body.decode(), "iss": self.url}, self.webhook_key())
        elif algorithm == "hmac":
            signature = base64.b64encode(hmac.new(self.hmac_key.encode(), body, hashlib.sha256).digest()).decode()
        else:
            raise ValueError(f"unknown signature algorithm {algorithm!r}")
        headers = {
            "Content-Type": "application/json",
            "X-Lago-Signature": signature,
            "X-Lago-Signature-Algorithm": algorithm,
            "X-Lago-Unique-Key": str(uuid.uuid4()),
        }
        return body, headers

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

    async def _subscription(self, request: web.Request) -> web.Response:
        # Like lago-api's SubscriptionsController#show: `status` defaults to active, so a
        # pending or terminated subscription is 404 unless asked for by its status.
        external_id = request.match_info["external_id"]
        status = request.query.get("status", "active")
        rows = [r for r in self.subscription_rows if r["external_id"] == external_id and r["status"] == status]
        if not rows:
            return _error(404, "Not Found", "subscription_not_found")
        row = rows[-1]
        plan = self.plans.get(row["plan_code"])
        return web.json_response({"subscription": {**row, "plan": plan}})

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        q = request.query
        # Like Lago: only active subscriptions unless status[] names others; one row each,
        # so a terminated row and its active successor share an external_id.
        statuses = set(q.getall("status[]", [])) or {"active"}
        # Newest first, as Lago orders them: a plan change's terminated row comes after its successor.
        subs = [s for s in reversed(self.subscription_rows) if s["status"] in statuses]
        if "external_customer_id" in q:
            subs = [s for s in subs if s["external_customer_id"] == q["external_customer_id"]]
        page = int(q.get("page", 1))
        per_page = int(q.get("per_page", 20))
        total_pages = max(1, -(-len(subs) // per_page))
        return web.json_response(
            {
                "subscriptions": subs[(page - 1) * per_page : page * per_page],
                "meta": {"current_page": page, "next_page": page + 1 if page < total_pages else None,
                         "prev_page": page - 1 if page > 1 else None,
                         "total_pages": total_pages, "total_count": len(subs)},
            }
        )

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

    async def _public_key(self, request: web.Request) -> web.Response:
        if self.public_key_pem is None:
            return _error(404, "Not Found", "public_key_not_found")
        # Ruby's Base64.encode64: wrapped at 60 characters, trailing newline.
        encoded = base64.encodebytes(self.public_key_pem).decode()
        return web.Response(text=encoded, content_type="text/plain")

    async def _json_public_key(self, request: web.Request) -> web.Response:
        if self.public_key_pem is None:
            return _error(404, "Not Found", "public_key_not_found")
        return web.json_response({"webhook": {"public_key": base64.encodebytes(self.public_key_pem).decode()}})


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
