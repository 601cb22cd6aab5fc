"""Live events from the admin API's SSE stream (`GET /api/admin/v1/events`).

`SSEParser` is the text/event-stream grammar (WHATWG HTML, "server-sent events") with no I/O;
`EventStream` reads it over httpx, reconnects with backoff and resumes with `Last-Event-ID`,
so a dropped SSH-side network blip loses no charger status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from polaris.tui.api_client import API_PREFIX, AdminClient

EVENTS_PATH = API_PREFIX + "/events"


@dataclass(slots=True)
class LiveEvent:
    type: str
    data: Any
    id: str | None = None


@dataclass
class SSEParser:
    """Feed lines, get events; keeps the last event id and the server's retry hint."""

    last_event_id: str | None = None
    retry_ms: int | None = None
    _data: list[str] = field(default_factory=list)
    _type: str = ""

    def feed(self, line: str) -> LiveEvent | None:
        line = line.rstrip("\r\n")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> LiveEvent | None:
        data, etype = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        text = "\n".join(data)
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        return LiveEvent(type=etype, data=payload, id=self.last_event_id)


class EventStream:
    """Endless iterator of live events; reconnects until cancelled."""

    def __init__(
        self,
        client: AdminClient,
        *,
        on_state: Callable[[bool, str | None], None] | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 15.0,
    ):
        self.client = client
        self.on_state = on_state
        self.parser = SSEParser()
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    def _state(self, connected: bool, reason: str | None = None) -> None:
        if self.on_state:
            self.on_state(connected, reason)

    async def __aiter__(self) -> AsyncIterator[LiveEvent]:
        backoff = self.min_backoff
        http = self.client._http
        while True:
            headers = {"Accept": "text/event-stream", **self.client.auth_headers()}
            if self.parser.last_event_id:
                headers["Last-Event-ID"] = self.parser.last_event_id
            try:
                async with http.stream(
                    "GET", EVENTS_PATH, headers=headers, timeout=httpx.Timeout(10.0, read=None)
                ) as resp:
                    if resp.status_code in (401, 403):
                        self._state(False, "not authorized for live events")
                        return
                    if resp.status_code != 200:
                        raise httpx.HTTPStatusError("events", request=resp.request, response=resp)
                    self._state(True)
                    backoff = self.min_backoff
                    async for line in resp.aiter_lines():
                        event = self.parser.feed(line)
                        if event is not None:
                            yield event
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                self._state(False, str(exc) or type(exc).__name__)
            else:
                self._state(False, "stream ended")
            delay = max(backoff, (self.parser.retry_ms or 0) / 1000)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.max_backoff)
