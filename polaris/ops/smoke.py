"""`polaris smoke`: the install guide's smoke test against a running deployment.

A test charger (is_test, so its sessions are never billed, mailed or pushed) connects over
the real OCPP URL with the simulator's charger client, boots, authorizes a test card, runs
a short session and stops it; the session must then be visible through the admin API with
the energy the charger reported. Every step is timed and, when it fails, says what to
check; the steps after a failure are skipped, and the clean-up always runs (after a
failure, a timeout or Ctrl-C too) unless `keep` asks to leave the data for debugging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from polaris.db.errors import RepoError
from polaris.db.pool import connect, describe_connect_error
from polaris.db.repos import smoke as smoke_repo
from polaris.logs import get_logger
from polaris.sim.charger import ChargerRefused, SimError, SimulatedCharger

log = get_logger(__name__)

REGISTER = "register test charger"
CONNECT = "connect over the OCPP URL"
BOOT = "BootNotification Accepted"
STATUS = "StatusNotification"
AUTHORIZE = "Authorize Accepted"
START = "StartTransaction"
METER = "MeterValues"
STOP = "StopTransaction"
ADMIN_API = "admin API shows the session"
NOT_BILLABLE = "not billable"
CLEANUP = "cleanup"
STEPS = (REGISTER, CONNECT, BOOT, STATUS, AUTHORIZE, START, METER, STOP, ADMIN_API, NOT_BILLABLE, CLEANUP)

# What to check when a step fails without a more specific hint.
HINTS = {
    REGISTER: "check DATABASE_URL and that `polaris migrate` has run",
    CONNECT: "check that the OCPP server runs and the URL reaches it (Caddy, OCPP_HOST, DNS, port 443)",
    BOOT: "check the OCPP server's log (`docker compose logs ocpp`) for the BootNotification",
    STATUS: "check the OCPP server's log for the StatusNotification and its database connection",
    AUTHORIZE: "check the OCPP server's log; the web process's pre-authorize hook (WEB_INTERNAL_URL "
    "as the OCPP server sees it, STEVE_PREAUTH_HMAC_KEY equal on both)",
    START: "check the OCPP server's log and its database connection (StartTransaction is stored "
    "before it is answered)",
    METER: "check the OCPP server's log and its database connection",
    STOP: "check the OCPP server's log and its database connection",
    ADMIN_API: "check that `polaris web` runs, reaches the same database, and answers on the admin URL "
    "with the admin host (ADMIN_BASE_URL)",
    NOT_BILLABLE: "the session was not marked as a test: check that every process runs the same "
    "release and `polaris migrate` has run",
    CLEANUP: "run `polaris smoke --cleanup CHARGE_BOX_ID` to remove what is left",
}

ADMIN_TRANSACTION_PATH = "/api/admin/v1/transactions/{id}"


class StepFailed(Exception):
    """A step did not pass; `detail` says what happened, `hint` what to check."""

    def __init__(self, detail: str, hint: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


@dataclass
class Step:
    name: str
    ok: bool = False
    detail: str = ""
    ms: int = 0
    hint: str = ""
    skipped: bool = False

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "ok": self.ok, "detail": self.detail, "ms": self.ms}
        if self.hint:
            doc["hint"] = self.hint
        if self.skipped:
            doc["skipped"] = True
        return doc


@dataclass
class SmokeOptions:
    database_url: str
    ocpp_url: str  # the chargers' URL without the id: wss://ocpp.example.com/ocpp
    admin_url: str  # where the web process answers, e.g. WEB_INTERNAL_URL
    admin_host: str  # sent as Host: the web process routes admin paths by host
    timeout: float = 60.0
    keep: bool = False
    meter_interval: int = 1
    charge_box_id: str | None = None  # set by the run; tests may read it


@dataclass
class SmokeReport:
    steps: list[Step] = field(default_factory=list)
    charge_box_id: str | None = None
    transaction_id: int | None = None
    kept: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "steps": [s.as_json() for s in self.steps],
            "chargeBoxId": self.charge_box_id,
            "transactionId": self.transaction_id,
            "kept": self.kept,
        }


class _Abort(Exception):
    """A step failed: skip the rest."""


class _Runner:
    def __init__(self, report: SmokeReport, on_step: Callable[[Step], None] | None):
        self.report = report
        self.on_step = on_step
        self.current: str | None = None
        self.started = 0.0

    def _record(self, step: Step) -> None:
        self.report.steps.append(step)
        self.current = None
        if self.on_step is not None:
            self.on_step(step)

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    async def step(self, name: str, work: Callable[[], Awaitable[str]]) -> None:
        self.current, self.started = name, time.monotonic()
        try:
            detail = await work()
        except StepFailed as exc:
            self._record(Step(name, False, exc.detail, self._elapsed_ms(), exc.hint or HINTS[name]))
            raise _Abort from None
        self._record(Step(name, True, detail, self._elapsed_ms()))

    def fail_current(self, detail: str) -> None:
        """The step in progress was cut short (overall timeout, Ctrl-C)."""
        if self.current is not None:
            self._record(Step(self.current, False, detail, self._elapsed_ms(), HINTS[self.current]))

    def skip_rest(self) -> None:
        done = {s.name for s in self.report.steps}
        for name in STEPS:
            if name != CLEANUP and name not in done:
                self._record(Step(name, False, "skipped: an earlier step failed", 0, skipped=True))


async def run_smoke(opts: SmokeOptions, on_step: Callable[[Step], None] | None = None) -> SmokeReport:
    """Run every step (see the module docstring); `on_step` sees each step as it finishes."""
    report = SmokeReport()
    runner = _Runner(report, on_step)
    names = smoke_repo.SmokeNames.new()
    report.charge_box_id = opts.charge_box_id = names.charge_box_id
    state = _State(opts, names)
    try:
        async with asyncio.timeout(opts.timeout):
            await runner.step(REGISTER, state.register)
            await runner.step(CONNECT, state.connect)
            await runner.step(BOOT, state.boot)
            await runner.step(STATUS, state.statuses)
            await runner.step(AUTHORIZE, state.authorize)
            await runner.step(START, state.start_transaction)
            report.transaction_id = state.transaction_id
            await runner.step(METER, state.meter_values)
            await runner.step(STOP, state.stop_transaction)
            await runner.step(ADMIN_API, state.admin_api)
            await runner.step(NOT_BILLABLE, state.not_billable)
    except _Abort:
        runner.skip_rest()
    except TimeoutError:
        runner.fail_current(f"not done within the overall time limit of {opts.timeout:g} s (--timeout)")
        runner.skip_rest()
    except asyncio.CancelledError:
        runner.fail_current("interrupted")
        runner.skip_rest()
        await _cleanup(state, runner, report)
        raise
    report.transaction_id = state.transaction_id
    await _cleanup(state, runner, report)
    return report


async def _cleanup(state: _State, runner: _Runner, report: SmokeReport) -> None:
    async def work() -> str:
        # Not under the run's time limit: clean-up must get its chance after a timeout.
        try:
            return await asyncio.wait_for(state.cleanup(), 30)
        except TimeoutError:
            raise StepFailed("clean-up did not finish within 30 s") from None

    report.kept = state.opts.keep and state.data is not None
    try:
        await runner.step(CLEANUP, work)
    except _Abort:
        pass


class _State:
    """What the steps share: the database connection, the created data, the charger."""

    def __init__(self, opts: SmokeOptions, names: smoke_repo.SmokeNames):
        self.opts = opts
        self.names = names
        self.conn: asyncpg.Connection | None = None
        self.data: smoke_repo.SmokeData | None = None
        self.charger: SimulatedCharger | None = None
        self.start_task: asyncio.Task | None = None
        self.session: Any = None
        self.transaction_id: int | None = None
        self.energy_wh: int | None = None

    @property
    def ws_url(self) -> str:
        return f"{self.opts.ocpp_url.rstrip('/')}/{self.names.charge_box_id}"

    # ------------------------------------------------------------------ steps

    async def register(self) -> str:
        try:
            self.conn = await connect(self.opts.database_url, timeout=10)
        except Exception as exc:  # any connect failure is one line for a person
            raise StepFailed(describe_connect_error(exc)) from None
        try:
            # The token outlives the run only by a little, in case the clean-up cannot run.
            self.data = await smoke_repo.create_smoke_data(
                self.conn, self.names, token_lifetime=timedelta(seconds=self.opts.timeout + 600)
            )
        except asyncpg.UndefinedColumnError:
            raise StepFailed(
                "the database has no ocpp.charge_boxes.is_test column", "run `polaris migrate`"
            ) from None
        except (RepoError, asyncpg.PostgresError) as exc:
            raise StepFailed(f"could not create the test data: {exc}") from None
        return (
            f"{self.names.charge_box_id} (is_test), card {self.names.id_tag} of customer "
            f"{self.names.customer_email}, a temporary operator API token"
        )

    async def connect(self) -> str:
        assert self.data is not None
        self.charger = SimulatedCharger(
            self.opts.ocpp_url,
            self.names.charge_box_id,
            self.data.charger_key,
            id_tag=self.names.id_tag,
            connectors=1,
            auto_sessions=False,
            model="Polaris smoke",
            session_seconds=3600,  # the run stops the session itself
            meter_interval=self.opts.meter_interval,
            heartbeat_interval=3600,
            reconnect_max_delay=2,
            step_delay=0.1,
            response_timeout=10,
        )
        charger = self.charger
        self.start_task = asyncio.create_task(charger.start(timeout=self.opts.timeout))
        # The first failed attempt is the answer: a deployment under test should be up.
        # The simulator counts attempts rather than signalling them, hence the short poll.
        while charger.connect_count == 0 and charger.last_error is None and not self.start_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if charger.connect_count == 0:
            await asyncio.wait({self.start_task}, timeout=0.5)  # a refusal settles `start` at once
            exc = self.start_task.exception() if self.start_task.done() else None
            if isinstance(exc, ChargerRefused) and exc.status_code == 401:
                raise StepFailed(
                    f"{self.ws_url} refused the test charger's key: {charger.last_error}",
                    "the OCPP server reads another database than this command (DATABASE_URL), or a "
                    "proxy drops the Authorization header",
                )
            if isinstance(exc, ChargerRefused) and exc.status_code == 404:
                raise StepFailed(
                    f"{self.ws_url}: HTTP 404", "the URL's path must end in /ocpp (the charger id is appended)"
                )
            raise StepFailed(
                f"charger could not connect to {self.ws_url}: {charger.last_error or exc}",
                f"check Caddy and OCPP_HOST (or --ocpp-url), and that the OCPP server runs: {HINTS[CONNECT]}",
            )
        return self.ws_url

    async def boot(self) -> str:
        assert self.charger is not None and self.start_task is not None
        try:
            await self.start_task
        except ChargerRefused as exc:
            raise StepFailed(str(exc)) from None
        except SimError as exc:
            raise StepFailed(f"no accepted boot: {exc}") from None
        return f"{self.charger.registration_status}, heartbeat interval {self.charger.heartbeat_interval} s"

    async def statuses(self) -> str:
        assert self.charger is not None
        expected = 1 + len(self.charger.connectors)
        sent = self.charger.sent["StatusNotification"]
        if sent < expected:
            raise StepFailed(f"{sent} of {expected} StatusNotifications were answered")
        return f"{sent} answered (connectors 0 and 1)"

    async def authorize(self) -> str:
        charger = self.charger
        assert charger is not None
        tag = self.names.id_tag
        if not charger.start_session(1, tag):
            raise StepFailed("connector 1 of the test charger is busy")
        self.session = charger.connectors[1].session
        try:
            await charger.wait_for(lambda c: tag in c.auth_cache or c.connectors[1].session is None, 30)
        except SimError:
            raise StepFailed("no answer to Authorize within 30 s") from None
        status = charger.auth_cache.get(tag)
        if status is None:
            raise StepFailed(f"Authorize was not answered: {charger.last_error or 'connection lost'}")
        if status != "Accepted":
            raise StepFailed(
                f"the test card {tag} was answered {status}",
                "the web process's pre-authorize hook or the OCPP server refused a card of an active "
                "customer: check both logs for 'pre-authorize'",
            )
        return f"card {tag}: Accepted"

    async def start_transaction(self) -> str:
        charger, s = self.charger, self.session
        assert charger is not None and s is not None
        try:
            await charger.wait_for(lambda c: s.transaction_id is not None or c.connectors[1].session is not s, 30)
        except SimError:
            raise StepFailed(
                f"StartTransaction not answered within 30 s ({charger.queued_messages} message(s) queued)"
            ) from None
        if s.transaction_id is None:
            raise StepFailed("the session ended before StartTransaction was answered")
        self.transaction_id = s.transaction_id
        if s.id_tag_status != "Accepted":
            raise StepFailed(f"transaction {s.transaction_id} started with id tag status {s.id_tag_status}")
        return f"transactionId {s.transaction_id}"

    async def meter_values(self) -> str:
        charger = self.charger
        assert charger is not None
        wait = max(30, 3 * self.opts.meter_interval)
        try:
            await charger.wait_for(lambda c: c.sent["MeterValues"] >= 1, wait)
        except SimError:
            raise StepFailed(f"no MeterValues answered within {wait} s") from None
        return f"{charger.sent['MeterValues']} answered"

    async def stop_transaction(self) -> str:
        charger = self.charger
        assert charger is not None
        charger.stop_session(1, "Local")
        try:
            await charger.wait_for(lambda c: bool(c.completed_transactions), 30)
        except SimError:
            raise StepFailed("StopTransaction not answered within 30 s") from None
        done = charger.completed_transactions[0]
        self.energy_wh = done.meter_stop - done.meter_start
        return f"{self.energy_wh} Wh delivered"

    async def admin_api(self) -> str:
        assert self.data is not None and self.transaction_id is not None and self.energy_wh is not None
        url = self.opts.admin_url.rstrip("/") + ADMIN_TRANSACTION_PATH.format(id=self.transaction_id)
        headers = {"Authorization": f"Bearer {self.data.api_token}", "Host": self.opts.admin_host}
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
                resp = await http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise StepFailed(
                f"cannot reach the admin API at {url}: {exc.__class__.__name__} {exc}",
                "check that `polaris web` runs and --admin-url (default WEB_INTERNAL_URL) reaches it",
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if resp.status_code == 404 and "not served on this host" in str(body.get("message", "")):
            raise StepFailed(
                f"{url} is not served for Host {self.opts.admin_host}",
                "the web process routes admin paths by Host: ADMIN_BASE_URL must be the same here and in "
                "the web process (or pass --admin-host)",
            )
        if resp.status_code == 401:
            raise StepFailed(
                f"{url} refused the temporary API token (401)",
                "the web process reads another database than this command (DATABASE_URL)",
            )
        if resp.status_code == 404:
            raise StepFailed(
                f"the admin API has no transaction {self.transaction_id} (404)",
                "the web process reads another database than the OCPP server or this command",
            )
        if resp.status_code != 200:
            raise StepFailed(f"{url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        problems = []
        if body.get("stop_timestamp") is None:
            problems.append("it is still open")
        if body.get("is_test") is not True:
            problems.append(f"is_test is {body.get('is_test')}")
        energy = body.get("energy_wh")
        if energy is None or abs(float(energy) - self.energy_wh) > 0.5:
            problems.append(f"energy {energy} Wh, the charger reported {self.energy_wh} Wh")
        if problems:
            raise StepFailed(f"transaction {self.transaction_id}: " + "; ".join(problems))
        return f"transaction {self.transaction_id}: {energy:g} Wh, is_test, billing state {body.get('billing_state')}"

    async def not_billable(self) -> str:
        assert self.conn is not None and self.transaction_id is not None
        facts = await smoke_repo.transaction_billing_facts(self.conn, self.transaction_id)
        if facts is None:
            raise StepFailed(f"transaction {self.transaction_id} is not in the database this command reads")
        if not facts["is_test"]:
            raise StepFailed(f"transaction {self.transaction_id} has is_test = false: it would be billed")
        if facts["usage_events"]:
            raise StepFailed(
                f"the billing ledger holds {facts['usage_events']} usage event(s) for it",
                "the sync worker must skip is_test sessions: check that it runs this release",
            )
        return "is_test = true, no usage event in the billing ledger"

    # ------------------------------------------------------------------ clean-up

    async def cleanup(self) -> str:
        if self.charger is not None:
            await self.charger.stop()
        if self.start_task is not None and not self.start_task.done():
            self.start_task.cancel()
            await asyncio.gather(self.start_task, return_exceptions=True)
        if self.data is None:
            if self.conn is not None:
                await self.conn.close()
            return "nothing was created"
        assert self.conn is not None
        try:
            if self.opts.keep:
                return (
                    f"kept for debugging (--keep): remove it with `polaris smoke --cleanup "
                    f"{self.names.charge_box_id}`"
                )
            await settle(self.conn, self.names)
            counts = await smoke_repo.delete_smoke_data(self.conn, self.names)
        except (RepoError, asyncpg.PostgresError, OSError) as exc:
            raise StepFailed(f"{exc.__class__.__name__}: {exc}", HINTS[CLEANUP].replace(
                "CHARGE_BOX_ID", self.names.charge_box_id)) from None
        finally:
            await self.conn.close()
        return f"removed {sum(counts.values())} row(s) in {len(counts)} table(s)"


async def settle(conn: asyncpg.Connection, names: smoke_repo.SmokeNames, *, quiet: float = 0.5,
                 limit: float = 5.0) -> None:
    """Wait until the OCPP server saw the disconnect and no live event about the charger arrived
    for `quiet` seconds (the web process stores them a moment after the fact), so the clean-up
    removes them all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last = await smoke_repo.activity_count(conn, names)
    quiet_since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        now = await smoke_repo.activity_count(conn, names)
        if now != last:
            last, quiet_since = now, loop.time()
        elif loop.time() - quiet_since >= quiet and not await smoke_repo.charger_connected(conn, names):
            return


async def cleanup_kept(database_url: str, charge_box_id: str) -> dict[str, int]:
    """Remove what a `--keep` run left (`polaris smoke --cleanup SMOKE-XXXXXXXX`)."""
    names = smoke_repo.SmokeNames.from_charge_box_id(charge_box_id)
    conn = await connect(database_url, timeout=10)
    try:
        return await smoke_repo.delete_smoke_data(conn, names)
    finally:
        await conn.close()


def render_step(step: Step) -> str:
    mark = "[skip]" if step.skipped else ("[ ok ]" if step.ok else "[FAIL]")
    line = f"{mark} {step.name}"
    if not step.skipped:
        line += f" ({step.ms} ms)"
    if step.detail and not step.skipped:
        line += f": {step.detail}"
    if not step.ok and step.hint:
        line += f"\n       hint: {step.hint}"
    return line + "\n"


def render_summary(report: SmokeReport) -> str:
    if report.ok:
        return f"\nSmoke test passed ({report.charge_box_id}, transaction {report.transaction_id}).\n"
    failed = next((s.name for s in report.steps if not s.ok and not s.skipped), "?")
    return f"\nSmoke test FAILED at '{failed}'.\n"
