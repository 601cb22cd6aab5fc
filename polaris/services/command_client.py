"""The web process's client of our own OCPP server's command API (`POST /api/v1/operations/{Operation}`).

The OCPP server (polaris.ocpp) relays each operation to the connected charger. The
settings keep the names of the SteVe deployment this platform replaced (STEVE_BASE_URL,
STEVE_API_USERNAME, STEVE_API_KEY); the client itself talks only to polaris.ocpp.

The OCPP server answers with the charger's reply, 409 when the charger is offline and
504 when it did not answer in time; those become `ApiError`s with the same status so
the admin API passes them through with a clear message.
"""

from __future__ import annotations

from typing import Any

import httpx

from polaris.config import Settings
from polaris.logs import get_logger
from polaris.services.errors import ApiError
from polaris.wire import CS_OPERATIONS, CS_OPERATIONS_201

log = get_logger(__name__)

# 1.6 names first, then the 2.0.1 operations 1.6 does not have.
OPERATIONS = tuple(dict.fromkeys((*CS_OPERATIONS, *CS_OPERATIONS_201)))
# The OCPP server waits up to 30 s for a charger; leave it room to answer 504 itself.
TIMEOUT = httpx.Timeout(40.0, connect=5.0)


class CommandClient:
    """Sends OCPP operations to chargers through the OCPP server's command API."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient):
        self.base_url = settings.STEVE_BASE_URL.rstrip("/")
        key = settings.STEVE_API_KEY.get_secret_value() if settings.STEVE_API_KEY else ""
        self.auth = httpx.BasicAuth(settings.STEVE_API_USERNAME, key)
        self.http = http

    async def operation(
        self, operation: str, charge_box_id: str, fields: dict[str, Any], *, requested_by: str | None = None
    ) -> Any:
        """Send one operation to a charger through the OCPP server; return the charger's answer."""
        if operation not in OPERATIONS:
            raise ApiError(400, "unknown_operation", f"{operation} is not an OCPP 1.6 or 2.0.1 central-system operation")
        body = {**fields, "chargeBoxId": charge_box_id}
        headers = {"X-Requested-By": requested_by} if requested_by else None
        try:
            resp = await self.http.post(
                f"{self.base_url}/api/v1/operations/{operation}",
                json=body,
                auth=self.auth,
                timeout=TIMEOUT,
                headers=headers,
            )
        except httpx.TimeoutException:
            raise ApiError(504, "charger_timeout", "the OCPP server did not answer in time") from None
        except httpx.HTTPError as exc:
            log.warning("command api unreachable", url=self.base_url, error=exc.__class__.__name__)
            raise ApiError(
                502, "ocpp_server_unreachable", f"cannot reach the OCPP server at {self.base_url}"
            ) from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code == 200:
            return payload
        message = _message(payload) or resp.text[:200] or resp.reason_phrase
        if resp.status_code == 409:
            raise ApiError(409, "charger_offline", message or f"charger {charge_box_id} is not connected")
        if resp.status_code == 504:
            raise ApiError(504, "charger_timeout", message or f"charger {charge_box_id} did not answer in time")
        if resp.status_code == 404:
            raise ApiError(404, "not_found", message)
        if resp.status_code in (400, 422):
            raise ApiError(400, "invalid_operation", message)
        if resp.status_code in (401, 403):
            log.error("command api refused our credentials", status=resp.status_code)
            raise ApiError(502, "ocpp_server_auth", "the OCPP server refused STEVE_API_USERNAME/STEVE_API_KEY")
        raise ApiError(502, "ocpp_server_error", f"the OCPP server answered {resp.status_code}: {message}")


def _message(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for key in ("message", "detail", "error"):
            if isinstance(payload.get(key), str):
                return payload[key]
    return None
