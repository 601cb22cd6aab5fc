"""Async client for the parts of Lago's REST API the sync uses (httpx).

Bearer auth; 5xx, timeouts and dropped connections retried with exponential backoff and
jitter; 429 waits for X-RateLimit-Reset; every request and answer logged without the key.
A 422 on an event batch is handled per event: Lago stores a batch all or nothing, so the
events it already has (`value_already_exist`) count as delivered, those it calls invalid
are returned with the reason, and the rest are sent again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from polaris.config import lago_api_root
from polaris.logs import get_logger

log = get_logger(__name__)

BATCH_MAX = 100  # Lago refuses larger batches (too_many_events)
SUM_AGGREGATION = "sum_agg"
# Lago keeps a terminated row beside the active one with the same external_id after a plan
# change: when several rows share an id, the first status here wins.
SUBSCRIPTION_PREFERENCE = ("active", "pending", "terminated", "canceled")


def preferred_subscriptions(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """external_id -> the row that bills: active before pending before terminated/canceled,
    and of two with one status the newest."""

    def rank(row: dict[str, Any]) -> tuple[int, str]:
        status = row.get("status")
        order = SUBSCRIPTION_PREFERENCE.index(status) if status in SUBSCRIPTION_PREFERENCE else 99
        newest = str(row.get("started_at") or row.get("created_at") or "")
        return (-order, newest)

    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        have = out.get(row["external_id"])
        if have is None or rank(row) > rank(have):
            out[row["external_id"]] = row
    return out


class LagoError(Exception):
    """Lago refused a request, or could not be reached; the message is for a person."""


class LagoUnavailable(LagoError):
    """Lago did not answer usefully after every retry (5xx, timeouts, rate limits)."""


class _TooManyEvents(Exception):
    """Lago's batch limit (LAGO_EVENTS_BATCH_MAX_LENGTH) is below the batch sent."""


class LagoSetupError(LagoError):
    """Lago is reachable but not set up as Polaris needs (metric, key)."""


@dataclass
class BatchResult:
    delivered: list[str] = field(default_factory=list)
    # Lago already had them (a retry after a lost answer): delivered too.
    duplicates: list[str] = field(default_factory=list)
    # transaction_id -> Lago's reason
    invalid: dict[str, str] = field(default_factory=dict)


def parse_rate_limit_reset(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from an X-RateLimit-Reset header.

    Lago sends the seconds left in the window; some proxies send an epoch time (s or ms).
    """
    if not value:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    now = time.time() if now is None else now
    if number > 1e12:  # epoch milliseconds
        return max(number / 1000 - now, 0.0)
    if number > 1e9:  # epoch seconds
        return max(number - now, 0.0)
    return max(number, 0.0)


def _already_exists(errors: Any) -> bool:
    if not isinstance(errors, dict) or not errors:
        return False
    tid = errors.get("transaction_id") or []
    return "value_already_exist" in tid and all(k == "transaction_id" for k in errors)


class LagoClient:
    """One instance per process; share it between runs (it pools connections)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 15.0,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rate_limit_cap: float = 120.0,
        max_rate_limited: int = 20,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        # One trailing /api/v1 dropped: Lago's spec lists its server with it, operators copy that.
        self.base_url = lago_api_root(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        # Events per batch: Lago's default limit, halved when a Lago answers too_many_events.
        self.batch_max = BATCH_MAX
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rate_limit_cap = rate_limit_cap
        self.max_rate_limited = max_rate_limited
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LagoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return delay * random.uniform(0.5, 1.5)  # jitter: workers retrying in step hurt Lago

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        what: str = "",
    ) -> httpx.Response:
        """Send with retries; return the first answer that is not 5xx or 429."""
        attempt = 0
        limited = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                resp = await self._http.request(method, path, json=json, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                log.warning(
                    "lago request failed",
                    method=method,
                    path=path,
                    what=what,
                    attempt=attempt,
                    error=f"{exc.__class__.__name__}: {exc}",
                )
                if attempt >= self.max_attempts:
                    raise LagoUnavailable(
                        f"Lago at {self.base_url} did not answer {method} {path} after "
                        f"{attempt} attempts ({exc.__class__.__name__})"
                    ) from None
                await self._sleep(self._backoff(attempt))
                continue
            ms = round((time.perf_counter() - started) * 1000, 1)
            log.info(
                "lago request",
                method=method,
                path=path,
                what=what,
                status=resp.status_code,
                ms=ms,
                attempt=attempt,
            )
            if resp.status_code == 429:
                limited += 1
                attempt -= 1  # waiting out a rate limit is not a failed attempt
                wait = parse_rate_limit_reset(resp.headers.get("x-ratelimit-reset"))
                if wait is None:
                    wait = self._backoff(limited)
                wait = min(wait, self.rate_limit_cap)
                if limited > self.max_rate_limited:
                    raise LagoUnavailable(
                        f"Lago kept answering 429 (rate limited) to {method} {path}"
                    )
                log.info("lago rate limited", path=path, wait_s=round(wait, 2))
                await self._sleep(wait)
                continue
            if resp.status_code >= 500:
                if attempt >= self.max_attempts:
                    raise LagoUnavailable(
                        f"Lago answered {resp.status_code} to {method} {path} after {attempt} attempts"
                    )
                await self._sleep(self._backoff(attempt))
                continue
            if resp.status_code == 401:
                raise LagoSetupError(
                    "Lago refused LAGO_API_KEY (401): copy the API key from Lago's "
                    "Developers > API keys page"
                )
            return resp

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise LagoError(
                f"Lago answered {resp.status_code} with a body that is not JSON: {resp.text[:200]!r}"
            ) from None

    def _unexpected(self, resp: httpx.Response, doing: str) -> LagoError:
        return LagoError(f"Lago answered {resp.status_code} to {doing}: {resp.text[:300]}")

    # ------------------------------------------------------------------ events

    async def send_events(self, events: Sequence[dict[str, Any]]) -> BatchResult:
        """POST /events/batch (at most 100); every event ends delivered, duplicate or invalid.

        A self-hosted Lago may take fewer per batch (LAGO_EVENTS_BATCH_MAX_LENGTH): on
        `too_many_events` the batch is halved and the size kept for every later batch.
        """
        if len(events) > BATCH_MAX:
            raise ValueError(f"Lago takes at most {BATCH_MAX} events per batch, not {len(events)}")
        result = BatchResult()
        todo = list(events)
        while todo:
            size = self.batch_max
            try:
                part = await self._send_batch(todo[:size])
            except _TooManyEvents:
                if size <= 1:
                    raise LagoError("Lago answered too_many_events to a batch of one event") from None
                self.batch_max = max(1, min(size, len(todo)) // 2)
                log.warning("lago batch limit lowered", batch_max=self.batch_max,
                            hint="this Lago's LAGO_EVENTS_BATCH_MAX_LENGTH is below 100")
                continue
            result.delivered += part.delivered
            result.duplicates += part.duplicates
            result.invalid.update(part.invalid)
            todo = todo[size:]
        return result

    async def _send_batch(self, events: Sequence[dict[str, Any]]) -> BatchResult:
        result = BatchResult()
        todo = list(events)
        while todo:
            resp = await self.request(
                "POST", "/events/batch", json={"events": todo}, what=f"{len(todo)} events"
            )
            if resp.status_code in (200, 201):
                result.delivered += [e["transaction_id"] for e in todo]
                return result
            if resp.status_code != 422:
                raise self._unexpected(resp, "an event batch")
            body = self._json(resp)
            details = body.get("error_details") if isinstance(body, dict) else None
            if not isinstance(details, dict) or not details:
                raise self._unexpected(resp, "an event batch")
            if "too_many_events" in (details.get("events") or []):
                raise _TooManyEvents()
            per_event: dict[int, Any] = {}
            for key, errors in details.items():
                try:
                    per_event[int(key)] = errors
                except (TypeError, ValueError):
                    # A batch-level error (no_events, too_many_events): a bug on our side.
                    raise self._unexpected(resp, "an event batch") from None
            rest = []
            for index, event in enumerate(todo):
                errors = per_event.get(index)
                if errors is None:
                    rest.append(event)
                elif _already_exists(errors):
                    mismatch = await self._verify_existing(event)
                    if mismatch is None:
                        result.duplicates.append(event["transaction_id"])
                    else:
                        result.invalid[event["transaction_id"]] = mismatch
                else:
                    result.invalid[event["transaction_id"]] = _describe(errors)
            if len(rest) == len(todo):
                raise self._unexpected(resp, "an event batch")
            todo = rest
        return result

    async def get_event(self, transaction_id: str, external_subscription_id: str | None = None) -> dict[str, Any] | None:
        """GET /events/{transaction_id}: the event Lago holds under that id, or None."""
        params = {"external_subscription_id": external_subscription_id} if external_subscription_id else None
        resp = await self.request("GET", f"/events/{transaction_id}", params=params, what="event")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._unexpected(resp, "an event look-up")
        return self._json(resp).get("event")

    async def _verify_existing(self, event: dict[str, Any]) -> str | None:
        """None if the event Lago already has under this id is this one (a retry after a lost
        answer); else why not: a reused id from another deployment or a restored database."""
        tid = event["transaction_id"]
        have = await self.get_event(tid, event["external_subscription_id"])
        if have is None:
            return None  # answered "already exists" but not found: trust the answer, reconcile checks
        ours = _value(event.get("properties"))
        theirs = _value(have.get("properties"))
        same_sub = have.get("external_subscription_id") in (None, event["external_subscription_id"])
        if same_sub and ours == theirs and have.get("code") in (None, event.get("code")):
            return None
        return (
            f"transaction_id {tid} is already used in Lago by another event (subscription "
            f"{have.get('external_subscription_id')}, value {theirs}, timestamp {have.get('timestamp')}) "
            f"than this session's ({event['external_subscription_id']}, value {ours}): not billed; "
            "another deployment or a restored database on the same Lago organization?"
        )

    async def list_events(
        self,
        *,
        external_subscription_id: str,
        code: str,
        timestamp_from: datetime,
        timestamp_to: datetime,
        per_page: int = 100,
    ) -> list[dict[str, Any]]:
        """Every event Lago holds for a subscription and metric in [from, to] (GET /events)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = await self.request(
                "GET",
                "/events",
                params={
                    "external_subscription_id": external_subscription_id,
                    "code": code,
                    "timestamp_from": timestamp_from.isoformat(),
                    "timestamp_to": timestamp_to.isoformat(),
                    "page": page,
                    "per_page": per_page,
                },
                what="list events",
            )
            if resp.status_code != 200:
                raise self._unexpected(resp, "listing events")
            body = self._json(resp)
            out += body.get("events", [])
            next_page = (body.get("meta") or {}).get("next_page")
            if not next_page:
                return out
            page = int(next_page)

    # ------------------------------------------------------------------ catalogue

    async def _get_object(self, path: str, root: str, doing: str) -> dict[str, Any] | None:
        resp = await self.request("GET", path, what=doing)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._unexpected(resp, doing)
        return self._json(resp).get(root)

    async def get_billable_metric(self, code: str) -> dict[str, Any] | None:
        return await self._get_object(f"/billable_metrics/{code}", "billable_metric", "billable metric")

    async def check_metric(self, code: str) -> dict[str, Any]:
        """The startup check: the metric exists and sums `value`; else say what to create."""
        metric = await self.get_billable_metric(code)
        create = (
            f"create it in Lago (Billable metrics > Add): code {code!r}, aggregation "
            "'sum', field 'value', not recurring"
        )
        if metric is None:
            raise LagoSetupError(f"Lago has no billable metric {code!r} (LAGO_METRIC_CODE): {create}")
        aggregation = metric.get("aggregation_type")
        if aggregation != SUM_AGGREGATION:
            raise LagoSetupError(
                f"Lago's billable metric {code!r} aggregates with {aggregation!r}, not sum: "
                f"kWh would be billed wrongly; {create} (or point LAGO_METRIC_CODE at one)"
            )
        field_name = metric.get("field_name")
        if field_name not in (None, "value"):
            raise LagoSetupError(
                f"Lago's billable metric {code!r} sums the field {field_name!r}; Polaris sends "
                f"kWh in 'value': {create}"
            )
        if metric.get("recurring"):
            raise LagoSetupError(
                f"Lago's billable metric {code!r} is recurring: Lago carries its total into every "
                "later billing period, so each kWh would be billed again every month; untick "
                f"'Recurring' on the metric in Lago (Billable metrics > {code}) or {create}"
            )
        rounding = metric.get("rounding_function")
        precision = metric.get("rounding_precision")
        if rounding and (precision is None or int(precision) < 3):
            raise LagoSetupError(
                f"Lago's billable metric {code!r} rounds with {rounding!r} to {precision or 0} "
                "decimal(s): Polaris sends kWh with 3 decimals, so the billed kWh would differ "
                f"from the charged ones; remove the rounding on the metric in Lago (Billable "
                f"metrics > {code} > Rounding) or set its precision to 3 or more"
            )
        expression = (metric.get("expression") or "").replace(" ", "")
        if expression and expression not in ("event.properties.value", "event.properties['value']",
                                             'event.properties["value"]'):
            raise LagoSetupError(
                f"Lago's billable metric {code!r} computes its value with the expression "
                f"{metric.get('expression')!r}, which changes the kWh Polaris sends: clear the "
                f"metric's expression in Lago (Billable metrics > {code} > Expression)"
            )
        return metric

    async def get_subscription(self, external_id: str, status: str | None = None) -> dict[str, Any] | None:
        """The subscription, with its plan embedded (overrides included).

        Lago's `GET /subscriptions/{external_id}` finds only an `active` one unless `status`
        says otherwise; without `status` each status is asked in SUBSCRIPTION_PREFERENCE
        order, so a pending or terminated subscription is reported as such, not as unknown.
        """
        for st in (status,) if status else SUBSCRIPTION_PREFERENCE:
            resp = await self.request(
                "GET", f"/subscriptions/{external_id}", params={"status": st}, what="subscription"
            )
            if resp.status_code == 404:
                continue
            if resp.status_code != 200:
                raise self._unexpected(resp, "subscription")
            return self._json(resp).get("subscription")
        return None

    async def list_subscriptions(self, *, per_page: int = 100, **filters: Any) -> list[dict[str, Any]]:
        """Every subscription matching `filters` (Lago lists active ones unless status[] says)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = await self.request(
                "GET", "/subscriptions", params={**filters, "page": page, "per_page": per_page},
                what="list subscriptions",
            )
            if resp.status_code != 200:
                raise self._unexpected(resp, "listing subscriptions")
            body = self._json(resp)
            out += body.get("subscriptions", [])
            next_page = (body.get("meta") or {}).get("next_page")
            if not next_page:
                return out
            page = int(next_page)

    async def current_usage(self, external_customer_id: str, external_subscription_id: str) -> dict[str, Any] | None:
        """GET /customers/{id}/current_usage: what Lago will bill in the open period (None: 404)."""
        resp = await self.request(
            "GET", f"/customers/{external_customer_id}/current_usage",
            params={"external_subscription_id": external_subscription_id}, what="current usage",
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._unexpected(resp, "current usage")
        return self._json(resp).get("customer_usage")

    async def past_usage(
        self, external_customer_id: str, external_subscription_id: str, *, code: str, periods: int = 3
    ) -> list[dict[str, Any]]:
        """GET /customers/{id}/past_usage: what Lago billed in the last invoiced periods."""
        resp = await self.request(
            "GET", f"/customers/{external_customer_id}/past_usage",
            params={"external_subscription_id": external_subscription_id, "billable_metric_code": code,
                    "periods_count": periods},
            what="past usage",
        )
        if resp.status_code == 404:
            return []
        if resp.status_code != 200:
            raise self._unexpected(resp, "past usage")
        return self._json(resp).get("usage_periods") or []

    async def get_plan(self, code: str) -> dict[str, Any] | None:
        return await self._get_object(f"/plans/{code}", "plan", "plan")

    async def upsert_customer(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """POST /customers creates or updates by external_id (Lago's upsert)."""
        resp = await self.request(
            "POST", "/customers", json={"customer": {"external_id": external_id, **fields}},
            what="upsert customer",
        )
        if resp.status_code not in (200, 201):
            raise self._unexpected(resp, "a customer upsert")
        return self._json(resp)["customer"]


def _value(properties: Any) -> str | None:
    from decimal import Decimal, InvalidOperation

    raw = (properties or {}).get("value") if isinstance(properties, dict) else None
    try:
        return str(Decimal(str(raw)).normalize()) if raw is not None else None
    except InvalidOperation:
        return str(raw)


def _describe(errors: Any) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errors.items())
    return str(errors)
