"""Prometheus metrics of one OCPP server process (served at /metrics on the command API port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

# Command round trips: a charger on a good link answers in tens of ms, a busy one in
# seconds; the server gives up at its response timeout (30 s).
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _HookFailures(Collector):
    """Hook failures by hook and reason, read from the hooks client's own counter."""

    def __init__(self, failures: Callable[[], Mapping[tuple[str, str], int]]):
        self._failures = failures

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "polaris_ocpp_hook_failures",
            "pre-authorize / meter-values hook calls to the web process that failed, by reason",
            labels=["hook", "reason"],
        )
        for (hook, reason), n in sorted(self._failures().items()):
            family.add_metric([hook, reason], n)
        yield family


class OcppMetrics:
    """One registry per server, so tests running several servers never collide."""

    def __init__(
        self,
        connected: Callable[[], int],
        hook_dropped: Callable[[], int],
        hook_failures: Callable[[], Mapping[tuple[str, str], int]] = dict,
    ):
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "polaris_ocpp_messages", "charger-initiated messages by action and outcome",
            ["action", "outcome"], registry=self.registry,
        )
        self.commands = Counter(
            "polaris_ocpp_commands", "commands sent to chargers by operation and outcome",
            ["operation", "outcome"], registry=self.registry,
        )
        self.command_seconds = Histogram(
            "polaris_ocpp_command_seconds",
            "time from a command API request to the charger's answer (or the error), by operation",
            ["operation"], buckets=COMMAND_BUCKETS, registry=self.registry,
        )
        self.refused = Counter(
            "polaris_ocpp_admission_refused", "connections refused before the upgrade, by HTTP status",
            ["status"], registry=self.registry,
        )
        self.rate_limited = Counter(
            "polaris_ocpp_rate_limited", "charger messages answered CALLERROR for exceeding OCPP_MAX_MESSAGES_PER_SECOND",
            registry=self.registry,
        )
        Gauge("polaris_ocpp_connected_chargers", "chargers connected to this instance",
              registry=self.registry).set_function(connected)
        Gauge("polaris_ocpp_meter_hook_dropped", "meter-values hook posts lost (queue full or failed)",
              registry=self.registry).set_function(hook_dropped)
        self.registry.register(_HookFailures(hook_failures))

    def render(self) -> bytes:
        return generate_latest(self.registry)
