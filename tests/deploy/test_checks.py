"""The runner doctor and health share (polaris/ops/checks.py): a check that hangs, raises or
cannot run is one line of the checklist, in the list's order, and the run ends in time."""

from __future__ import annotations

import asyncio
import time

from polaris.ops import checks
from polaris.ops.checks import CheckContext, CheckResult, Skip


async def check_fine(ctx: CheckContext) -> CheckResult:
    return CheckResult("fine", "Fine", "ok", "all good")


async def check_hangs(ctx: CheckContext) -> CheckResult:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def check_broken(ctx: CheckContext) -> CheckResult:
    raise KeyError("LAGO_API_URL")


async def check_needs_db(ctx: CheckContext) -> CheckResult:
    raise Skip("the database is down")


async def test_a_hung_a_broken_and_a_skipped_check_are_one_line_each(settings):
    ctx = CheckContext(settings, timeout=0.2)
    started = time.monotonic()
    results = await checks.run_checks(
        [check_fine, check_hangs, check_broken, check_needs_db], ctx, titles={"hangs": "Hanging service"}
    )
    assert time.monotonic() - started < 5
    assert [(r.name, r.title, r.status) for r in results] == [
        ("fine", "Fine", "ok"),
        ("hangs", "Hanging service", "fail"),
        ("broken", "broken", "fail"),
        ("needs_db", "needs_db", "skip"),
    ]
    assert results[1].message == "no answer within 1.4 s"
    assert results[2].message == "the check itself failed: KeyError: 'LAGO_API_URL'"
    assert results[3].message == "not checked: the database is down"
    assert ctx.http is None  # the run's own client is closed and dropped


async def test_an_unreachable_url_is_a_failed_line_with_the_error(settings, unused_tcp_port):
    ctx = CheckContext(settings, timeout=2)

    async def check_probe(c: CheckContext) -> CheckResult:
        r = await checks.get(c, f"http://127.0.0.1:{unused_tcp_port}/", name="probe", title="Probe",
                             say="{url}: down ({error})", fix="start it")
        assert isinstance(r, CheckResult)
        return r

    [r] = await checks.run_checks([check_probe], ctx)
    assert r.status == "fail" and r.fix == "start it"
    assert r.message.startswith(f"http://127.0.0.1:{unused_tcp_port}/: down (ConnectError")
    text = "\n".join(checks.checklist_lines([r], {"fail": "[FAIL]"}))
    assert text.startswith("[FAIL] Probe: http://") and text.endswith("fix: start it")
