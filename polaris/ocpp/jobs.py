"""Maintenance jobs of the OCPP server: periodic or woken work, run by one small runner.

A `Job` is a coroutine function and when to run it: every N seconds, when something sets
its `wake` event (after `settle` seconds, so a burst of changes is handled in one run), or
both. The server's `JobRunner` starts one task per job and cancels them at shutdown. A
run that fails is logged and the job carries on; a database outage only skips the run.

Jobs today: the presence buffers' flush and connection-state batches (presence.py),
the stuck-transaction check (maintenance.py), and the site load-management controller
(load_control.py), woken on session start/stop and on meter values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from polaris.logs import get_logger
from polaris.ocpp.errors import DB_UNAVAILABLE

log = get_logger(__name__)


@dataclass(slots=True)
class Job:
    name: str
    run: Callable[[], Awaitable[object]]
    every: float | None = None  # seconds from the end of one run to the next; None: only when woken
    first_after: float | None = None  # before the first periodic run (default: `every`; 0: at start)
    wake: asyncio.Event | None = field(default=None, repr=False)  # set it to run the job soon
    settle: float = 0.0  # after a wake-up, wait this long before running

    def __post_init__(self) -> None:
        if self.every is None and self.wake is None:
            raise ValueError(f"job {self.name!r} needs an interval, a wake event or both")


class JobRunner:
    """Runs the jobs added before `start()` until `close()`."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._tasks: list[asyncio.Task] = []

    def add(self, job: Job) -> Job:
        self.jobs.append(job)
        return job

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(job), name=f"job:{job.name}") for job in self.jobs]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self, job: Job) -> None:
        delay = job.every if job.first_after is None else job.first_after
        while True:
            woken = await _wait(job, delay)
            if woken and job.settle:
                await asyncio.sleep(job.settle)  # let a storm's changes pile up
            if job.wake is not None:
                job.wake.clear()
            await run_once(job)
            delay = job.every


async def run_once(job: Job) -> None:
    """One run of a job, its failure logged (the runner goes on)."""
    try:
        await job.run()
    except DB_UNAVAILABLE as exc:
        log.info("maintenance job skipped: database unavailable", job=job.name, error=exc.__class__.__name__)
    except Exception:
        log.exception("maintenance job failed", job=job.name)


async def _wait(job: Job, delay: float | None) -> bool:
    """Sleep `delay` or until woken; True when woken."""
    if job.wake is None:
        await asyncio.sleep(delay or 0)
        return False
    if delay is None:
        await job.wake.wait()
        return True
    try:
        async with asyncio.timeout(delay):
            await job.wake.wait()
        return True
    except TimeoutError:
        return False
