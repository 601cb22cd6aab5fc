"""Async client of the admin JSON API (`/api/admin/v1`), the console's only way to the system.

Every failure becomes one of three exceptions the UI can show as a notice:
`ApiUnreachable` (no answer), `Unauthorized` (token missing, expired or revoked) and
`ApiError` (the server said no, with its `{"error", "message"}` body).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from polaris.tui import models as m

API_PREFIX = "/api/admin/v1"
DEFAULT_TIMEOUT = 10.0
# Commands wait for the charger's answer; the OCPP server gives up after ~30 s.
COMMAND_TIMEOUT = 40.0
PAGE_SIZE = 500  # the admin API's largest page

M = TypeVar("M", bound=BaseModel)

# Operations the console offers, in the OCPP 1.6 spelling the command API expects.
OPERATIONS = (
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "Reset",
    "UnlockConnector",
    "ChangeAvailability",
    "GetConfiguration",
    "ChangeConfiguration",
    "TriggerMessage",
    "ClearCache",
)


class ApiUnreachable(Exception):
    """No HTTP answer at all (connection refused, DNS, timeout)."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the admin API at {url}: {reason}")


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, code: str, message: str):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{message} ({status} {code})")


class Unauthorized(ApiError):
    """401: sign in again."""


class SlowDown(ApiError):
    """Device login: poll less often (RFC 8628: add 5 seconds to the interval)."""


class ProtocolMismatch(ApiError):
    """The answer did not have the shape this console expects (server newer or older)."""


class AdminClient:
    """Typed calls to the admin API; one `httpx.AsyncClient` for the console's lifetime."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "polaris-tui"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- plumbing -------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
        auth: bool = True,
    ) -> Any:
        """Send one request under the API prefix; return the decoded JSON body (None for 204)."""
        url = API_PREFIX + path
        kwargs: dict[str, Any] = {"json": json, "headers": self.auth_headers() if auth else {}}
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None and v != ""}
        if read_timeout is not None:
            kwargs["timeout"] = read_timeout
        try:
            resp = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnreachable(self.base_url, "timed out") from exc
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        return decode(resp)

    @staticmethod
    def parse(model: type[M], data: Any) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ProtocolMismatch(200, "unexpected_response", f"unexpected answer: {exc.errors()[0]['msg']}") from exc

    @staticmethod
    def parse_list(model: type[M], data: Any) -> list[M]:
        items = data.get("items", data) if isinstance(data, dict) else data
        try:
            return TypeAdapter(list[model]).validate_python(items)  # type: ignore[valid-type]
        except ValidationError as exc:
            raise ProtocolMismatch(200, "unexpected_response", f"unexpected answer: {exc.errors()[0]['msg']}") from exc

    # --- sign in ----------------------------------------------------------------

    async def login(self, email: str, password: str) -> m.TokenGrant:
        data = await self.request("POST", "/auth/token", json={"email": email, "password": password}, auth=False)
        grant = self.parse(m.TokenGrant, data)
        self.token = grant.token
        return grant

    async def start_device_login(self) -> m.DeviceAuthorization:
        data = await self.request("POST", "/auth/device", json={}, auth=False)
        return self.parse(m.DeviceAuthorization, data)

    async def poll_device_login(self, device_code: str) -> m.TokenGrant | None:
        """The token once the admin approved in a browser; None while still pending."""
        try:
            data = await self.request("POST", "/auth/device/token", json={"device_code": device_code}, auth=False)
        except ApiError as exc:
            if exc.code == "authorization_pending":
                return None
            if exc.code == "slow_down":
                raise SlowDown(exc.status, exc.code, exc.message) from None
            raise
        grant = self.parse(m.TokenGrant, data)
        self.token = grant.token
        return grant

    async def me(self) -> m.Me:
        """Who the token belongs to (`GET /auth/session`); Unauthorized if it no longer works."""
        data = await self.request("GET", "/auth/session")
        return self.parse(m.Me, data.get("user") if isinstance(data, dict) else data)

    async def logout(self) -> None:
        """Revoke this token on the server (best effort by the caller)."""
        await self.request("POST", "/auth/logout", json={})

    # --- reads ------------------------------------------------------------------

    async def dashboard(self) -> m.Dashboard:
        return self.parse(m.Dashboard, await self.request("GET", "/dashboard"))

    async def iter_chargers(self, page_size: int = PAGE_SIZE, **filters: Any) -> AsyncIterator[list[m.Charger]]:
        """Every charger, a page at a time (so the table can paint the first page at once)."""
        cursor: str | None = None
        while True:
            data = await self.request("GET", "/chargers", params={"limit": page_size, "cursor": cursor, **filters})
            page = self.parse_list(m.Charger, data)
            yield page
            cursor = data.get("next_cursor") if isinstance(data, dict) else None
            if not page or not cursor:
                return

    async def charger(self, charge_box_id: str) -> m.ChargerDetail:
        return self.parse(m.ChargerDetail, await self.request("GET", f"/chargers/{quote(charge_box_id)}"))

    async def operation(self, charge_box_id: str, operation: str, fields: dict[str, Any] | None = None) -> m.OperationResult:
        """Send one OCPP operation to a charger through the OCPP server; the charger's answer."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        data = await self.request(
            "POST",
            f"/chargers/{quote(charge_box_id)}/operations/{operation}",
            json=fields or {},
            read_timeout=COMMAND_TIMEOUT,
        )
        result = self.parse(m.OperationResult, data)
        if result.status is None and isinstance(result.response, dict):
            result.status = result.response.get("status")
        result.operation = result.operation or operation
        return result

    async def transactions(self, *, active: bool | None = None, charge_box_id: str | None = None, customer: str | None = None, limit: int = 200) -> list[m.Transaction]:
        params = {"active": None if active is None else str(active).lower(), "charge_box_id": charge_box_id, "customer": customer, "limit": limit}
        return self.parse_list(m.Transaction, await self.request("GET", "/transactions", params=params))

    async def transaction(self, transaction_id: int) -> m.TransactionDetail:
        return self.parse(m.TransactionDetail, await self.request("GET", f"/transactions/{transaction_id}"))

    async def customers(self, search: str | None = None, limit: int = 200) -> list[m.Customer]:
        return self.parse_list(m.Customer, await self.request("GET", "/customers", params={"q": search, "limit": limit}))

    async def customer(self, customer_id: int) -> m.Customer:
        return self.parse(m.Customer, await self.request("GET", f"/customers/{customer_id}"))

    async def invite_customer(self, email: str, name: str | None = None) -> m.Customer:
        return self.parse(m.Customer, await self.request("POST", "/customers", json={"email": email, "name": name, "invite": True}))

    async def set_customer_active(self, customer_id: int, active: bool) -> m.Customer:
        """Deactivate (their cards stop working) or reactivate a customer; they are mailed either way."""
        return self.parse(m.Customer, await self.request("PATCH", f"/customers/{customer_id}", json={"active": active}))

    async def id_tags(self, search: str | None = None, limit: int = 200) -> list[m.IdTag]:
        return self.parse_list(m.IdTag, await self.request("GET", "/id-tags", params={"q": search, "limit": limit}))

    async def add_id_tag(self, id_tag: str, customer_email: str | None = None, label: str | None = None) -> m.IdTag:
        body = {"id_tag": id_tag, "customer_email": customer_email, "label": label}
        return self.parse(m.IdTag, await self.request("POST", "/id-tags", json=body))

    async def link_id_tag(self, id_tag: str, customer_id: int | None) -> m.IdTag:
        """Link an existing card to a customer (None unlinks it)."""
        return self.parse(m.IdTag, await self.request("PATCH", f"/id-tags/{quote(id_tag)}", json={"customer_id": customer_id}))

    async def block_id_tag(self, id_tag: str, blocked: bool = True) -> m.IdTag:
        return self.parse(m.IdTag, await self.request("PATCH", f"/id-tags/{quote(id_tag)}", json={"blocked": blocked}))

    async def sync_status(self) -> m.SyncStatus:
        return self.parse(m.SyncStatus, await self.request("GET", "/sync"))

    async def sync_runs(self, limit: int = 50) -> list[m.SyncRun]:
        return self.parse_list(m.SyncRun, await self.request("GET", "/sync/runs", params={"limit": limit}))

    async def pin_tier(self, tier: str | None) -> m.SyncStatus:
        return self.parse(m.SyncStatus, await self.request("PUT", "/sync/pin", json={"tier": tier}))

    async def sync_now(self) -> None:
        await self.request("POST", "/sync/trigger", json={})

    async def unbillable(self, limit: int = 200) -> list[m.Unbillable]:
        return self.parse_list(m.Unbillable, await self.request("GET", "/sync/unbillable", params={"limit": limit}))

    async def settle_hold(self, transaction_id: int, energy_wh: int) -> m.Released:
        """Bill this energy for a session held as an anomaly."""
        body = {"energy_wh": energy_wh}
        return self.parse(m.Released, await self.request("POST", f"/sync/unbillable/{transaction_id}/settle", json=body))

    async def retry_hold(self, transaction_id: int) -> m.Released:
        """Send the events Lago refused for this session again."""
        return self.parse(m.Released, await self.request("POST", f"/sync/unbillable/{transaction_id}/retry", json={}))

    async def audit(self, limit: int = 200) -> list[m.AuditEntry]:
        """The newest entries of the audit log."""
        return self.parse_list(m.AuditEntry, await self.request("GET", "/audit", params={"limit": limit}))

    async def health(self) -> list[m.HealthCheck]:
        """One line per part the web process depends on (database, OCPP server, mail, ...)."""
        return self.parse_list(m.HealthCheck, await self.request("GET", "/health"))


    async def sites(self) -> list[m.Site]:
        """Sites with their grid limit and live load per phase."""
        return self.parse_list(m.Site, await self.request("GET", "/sites"))

    async def site(self, name: str) -> m.SiteDetail:
        """One site: limits, live totals and each session's allocation and draw."""
        return self.parse(m.SiteDetail, await self.request("GET", f"/sites/{quote(name)}"))


def quote(segment: str) -> str:
    """One path segment, percent-encoded (charge box ids may hold `:`, `*`, `|`...)."""
    return urllib.parse.quote(segment, safe="")


def decode(resp: httpx.Response) -> Any:
    """The JSON body of a success, or the matching exception for an error answer."""
    if resp.status_code == 204 or not resp.content:
        body: Any = None
    else:
        try:
            body = resp.json()
        except ValueError:
            body = None
    if resp.is_success:
        return body
    code = "http_error"
    message = resp.reason_phrase or f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        message = str(body.get("message") or body.get("error") or message)
    cls = Unauthorized if resp.status_code == 401 else ApiError
    raise cls(resp.status_code, code, message)
