"""Fixtures for the billing sync: a fake Lago on a free port, a client, an engine."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_helpers import FakeClock, make_client

from polaris.config import Settings
from polaris.sim.lago import FakeLago
from polaris.sync.lago import LagoClient
from polaris.sync.worker import SyncEngine


@pytest.fixture
async def fake_lago() -> AsyncIterator[FakeLago]:
    lago = FakeLago()
    await lago.start()
    yield lago
    await lago.stop()


@pytest.fixture
def sync_settings(settings: Settings, fake_lago: FakeLago) -> Settings:
    return settings.model_copy(
        update={
            "LAGO_API_URL": fake_lago.url,
            "LAGO_API_KEY": SecretStr(fake_lago.api_key),
            # Tests insert sessions in January 2026: look back far enough for all of them.
            "SYNC_LOOKBACK_MINUTES": 10_000_000,
        }
    )


@pytest.fixture
async def lago_client(fake_lago: FakeLago) -> AsyncIterator[LagoClient]:
    client = make_client(fake_lago)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(pool, lago_client: LagoClient, sync_settings: Settings, clock: FakeClock) -> SyncEngine:
    return SyncEngine(pool, lago_client, sync_settings, clock=clock)
