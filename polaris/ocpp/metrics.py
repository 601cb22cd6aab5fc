"""Prometheus metrics of one OCPP server process (served at /metrics on the command API port)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class OcppMetrics:
    """One registry per server, so tests running several servers never collide."""

    def __init__(self, connected: Callable[[], int], hook_dropped: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "polaris_ocpp_messages", "charger-initiated messages by action and outcome",
            ["action", "outcome"], registry=self.registry,
        )
        self.commands = Counter(
            "polaris_ocpp_commands", "commands sent to chargers by operation and outcome",
            ["operation", "outcome"], registry=self.registry,
        )
        Gauge("polaris_ocpp_connected_chargers", "chargers connected to this instance",
              registry=self.registry).set_function(connected)
        Gauge("polaris_ocpp_meter_hook_dropped", "meter-values hook posts lost (queue full or failed)",
              registry=self.registry).set_function(hook_dropped)

    def render(self) -> bytes:
        return generate_latest(self.registry)
