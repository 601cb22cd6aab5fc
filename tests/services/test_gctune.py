"""The collector settings `polaris web` and `polaris ocpp` run with (polaris/gctune.py)."""

from __future__ import annotations

import gc

import pytest
from structlog.testing import capture_logs

from polaris.gctune import GC_THRESHOLDS, freeze_startup_objects, tune_gc
from polaris.services.app import app_factory, freeze_when_started


@pytest.fixture
def restore_gc():
    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.set_threshold(*thresholds)
    gc.callbacks[:] = callbacks
    gc.unfreeze()


def test_tune_gc_raises_thresholds_and_names_slow_collections(restore_gc, monkeypatch):
    import polaris.gctune as gctune

    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    monkeypatch.setattr(gctune, "SLOW_GC_S", 0.0)  # every collection counts as slow
    with capture_logs() as logs:
        gc.collect(0)
    slow = [e for e in logs if e["event"] == "slow garbage collection"]
    assert slow and slow[0]["generation"] == 0 and slow[0]["log_level"] == "warning"
    assert {"ms", "collected"} <= slow[0].keys()
    with capture_logs() as logs:
        freeze_startup_objects()  # the deliberate start-up collection is not news
    assert logs == []


async def test_the_web_process_freezes_its_start_up_objects_once_started(restore_gc, aiohttp_client, web_settings):
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    client = await aiohttp_client(freeze_when_started(app_factory(web_settings, pool_size=2)))
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # modules, the app, its routes and pool: long-lived objects
    resp = await client.get("/readyz")
    assert resp.status == 200, await resp.text()
