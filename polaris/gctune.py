"""Garbage-collector settings for the long-running servers (`polaris ocpp`, `polaris web`).

CPython's default thresholds (700, 10, 10) run a young collection every 700 allocations,
so under load every in-flight request's objects get promoted, and a full collection
follows every few seconds. A full collection walks every tracked object in the process:
in `polaris web` (pydantic, jinja2, authlib, aiohttp: ~half a million objects at start)
that stalled requests for 40-80 ms (bench/bench_admin_api.py, 500-row pages: p50 20 ms,
p99 95 ms); in `polaris ocpp` ~130 ms per 1,000 connected chargers.

Two remedies, both here:
- `freeze_startup_objects()` once the process has started: modules, schemas, the pool
  and the app live as long as the process, so they move out of the collector's reach and
  full collections scan only what requests and connections create;
- `tune_gc()`: young collections every 20,000 allocations (each ~10-20 ms at worst, and
  far fewer objects promoted), a full one considered only every 40 million. Cyclic
  garbage lives longer (reference counting still frees the rest at once): a few MiB.
Collections that still take over 20 ms are logged, so a stall has a name in the log.
"""

from __future__ import annotations

import gc
import time

from polaris.logs import get_logger

log = get_logger(__name__)

GC_THRESHOLDS = (20_000, 20, 100)
SLOW_GC_S = 0.02
# True while freeze_startup_objects collects on purpose (its pause is expected, not news).
_deliberate = [False]


def tune_gc() -> None:
    """Fewer, cheaper collections; log the ones that still stall the event loop."""
    gc.set_threshold(*GC_THRESHOLDS)
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took >= SLOW_GC_S and not _deliberate[0]:
            log.warning("slow garbage collection", generation=info["generation"],
                        ms=round(took * 1000, 1), collected=info["collected"])

    gc.callbacks.append(callback)


def freeze_startup_objects() -> None:
    """Collect once, then exempt everything alive now from future collections."""
    _deliberate[0] = True
    try:
        gc.collect()
    finally:
        _deliberate[0] = False
    gc.freeze()
