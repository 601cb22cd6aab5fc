"""The stand-in's billing side, as Lago behaves: subscription rows per status (a plan change
leaves a terminated row beside the new active one), billing periods that are invoiced and
then bill nothing more, `current_usage`/`past_usage`, and webhook signing (JWT and HMAC)
with the keys its two key endpoints serve. Mixed into polaris.sim.lago.FakeLago.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey


def error(status: int, error: str, code: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"status": status, "error": error, "code": code}
    if details is not None:
        body["error_details"] = details
    return web.json_response(body, status=status)


class LagoBilling:
    """State (set by FakeLago.__init__): subscription_rows, invoiced_periods, event_rows,
    plans, metrics, signing_key, public_key_pem, hmac_key, url."""

    subscription_rows: list[dict[str, Any]]
    invoiced_periods: dict[str, list[tuple[datetime, datetime, int]]]
    event_rows: dict[tuple[str, str], dict[str, Any]]
    plans: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    signing_key: RSAKey | None
    public_key_pem: bytes | None
    hmac_key: str
    url: str

    add_plan: Any  # FakeLago's

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
            return error(404, "Not Found", "customer_not_found")
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
            return error(404, "Not Found", "customer_not_found")
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

    async def _subscription(self, request: web.Request) -> web.Response:
        # Like lago-api's SubscriptionsController#show: `status` defaults to active, so a
        # pending or terminated subscription is 404 unless asked for by its status.
        external_id = request.match_info["external_id"]
        status = request.query.get("status", "active")
        rows = [r for r in self.subscription_rows if r["external_id"] == external_id and r["status"] == status]
        if not rows:
            return error(404, "Not Found", "subscription_not_found")
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

    async def _public_key(self, request: web.Request) -> web.Response:
        if self.public_key_pem is None:
            return error(404, "Not Found", "public_key_not_found")
        # Ruby's Base64.encode64: wrapped at 60 characters, trailing newline.
        encoded = base64.encodebytes(self.public_key_pem).decode()
        return web.Response(text=encoded, content_type="text/plain")

    async def _json_public_key(self, request: web.Request) -> web.Response:
        if self.public_key_pem is None:
            return error(404, "Not Found", "public_key_not_found")
        return web.json_response({"webhook": {"public_key": base64.encodebytes(self.public_key_pem).decode()}})
