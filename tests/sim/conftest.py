"""Fixtures: the bare reference central system (bench/reference_server.py) on a free port."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_reference_module():
    name = "polaris_bench_reference_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "reference_server.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


reference = _load_reference_module()


@pytest.fixture
def reference_module():
    """bench/reference_server.py as a module (ChargePoint, ReferenceServer)."""
    return reference


@pytest.fixture
async def central_system() -> AsyncIterator:
    """A running reference server that records every message; `.port`, `.url`."""
    server = reference.ReferenceServer(heartbeat_interval=60, record=True)
    port = await server.start("127.0.0.1", 0)
    server.url = f"ws://127.0.0.1:{port}/ocpp"
    yield server
    await server.stop()


@pytest.fixture
async def make_charger(central_system) -> AsyncIterator:
    """Build started chargers against the reference server (fast timings); stopped at teardown."""
    from polaris.sim.charger import SimulatedCharger

    made: list[SimulatedCharger] = []

    async def make(charge_box_id: str = "SIM-0001", *, start: bool = True, **kwargs) -> SimulatedCharger:
        kwargs.setdefault("id_tag", "TAG-0001")
        kwargs.setdefault("auto_sessions", False)
        kwargs.setdefault("step_delay", 0.05)
        kwargs.setdefault("reconnect_max_delay", 0.5)
        charger = SimulatedCharger(central_system.url, charge_box_id, "sim-password-0123", **kwargs)
        made.append(charger)
        if start:
            await charger.start()
        return charger

    yield make
    for charger in made:
        await charger.stop()
