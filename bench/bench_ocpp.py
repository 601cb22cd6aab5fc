"""OCPP server benchmark: connections held, memory per connection, latency at a realistic rate,
closed-loop throughput; our server (`polaris ocpp`, with Postgres) next to the bare reference
server (bench/reference_server.py, the `ocpp` library's example, no persistence).

    .venv/bin/python bench/bench_ocpp.py                    # 2,000 chargers, both servers
    .venv/bin/python bench/bench_ocpp.py --chargers 10000   # the target figure

Load comes from separate worker processes (this file with --worker), at most --per-worker
connections each (a process may open 20,000 files here). Workers are lean WebSocket clients
sending pre-built OCPP-J frames, not full simulated chargers, so the load costs little CPU of
its own; they share the machine's cores with the server all the same. Each charger:
BootNotification, StatusNotification (connectors 0 and 1) and StartTransaction once, then
- realistic phase: a Heartbeat every 5 min and MeterValues every minute, at random phase
  offsets; latency = send to reply, measured per call;
- saturation phase: closed loop, each charger sends its next MeterValues as soon as the last
  one is answered.
Memory: the server process's VmRSS before the chargers connect and after they all have.
Our server needs Postgres: DATABASE_URL if set, else the embedded one under .polaris/bench;
the benchmark creates a fresh database, migrates it, registers the chargers through the
repository functions, and drops it at the end. A small local receiver answers the server's
pre-authorize and meter-values hooks, as the web process would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import itertools
import json
import math
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import create_database, drop_database  # noqa: E402

CHARGER_KEY = "bench-charger-key-0123456789"
# The local address a load worker's connections leave from (--source-address): one address has
# only ~28,000 ephemeral ports towards one server port, so 38,000 chargers need two.
SOURCE_ADDRESS: str | None = None
ID_TAG = "BENCHTAG0001"
HEARTBEAT_PERIOD = 300.0
METER_PERIOD = 60.0
IDLE_SECONDS = 10.0
# Realistic-phase calls slower than this are listed by the second they were sent in, with
# wall-clock times, so they can be matched with the server's log (GC, hook queue, database).
SLOW_MS = 50.0
LEAD_IN_S = 1.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------------- load worker


class LeanCharger:
    """One WebSocket connection speaking just enough OCPP-J 1.6 to load a server."""

    def __init__(self, charge_box_id: str, url: str):
        self.id = charge_box_id
        self.url = f"{url}/{charge_box_id}"
        self.ws = None
        self.ids = itertools.count(1)
        self.transaction_id: int | None = None
        self.energy = random.randint(100_000, 5_000_000)

    async def call(self, action: str, payload: dict) -> dict:
        uid = f"{self.id}-{next(self.ids)}"
        await self.ws.send(json.dumps([2, uid, action, payload], separators=(",", ":")))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg[0] == 2:  # the server asks something (e.g. TriggerMessage): not part of the load
                await self.ws.send(json.dumps([4, msg[1], "NotImplemented", "bench client", {}]))
                continue
            if msg[1] != uid:
                continue
            if msg[0] == 4:
                raise RuntimeError(f"{action}: CALLERROR {msg[2]} {msg[3]}")
            return msg[2]

    def meter_values(self) -> dict:
        self.energy += random.randint(100, 400)
        payload = {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": now_iso(),
                    "sampledValue": [
                        {"value": str(self.energy), "context": "Sample.Periodic",
                         "measurand": "Energy.Active.Import.Register", "unit": "Wh", "location": "Outlet"},
                        {"value": f"{random.uniform(7000, 11000):.1f}", "context": "Sample.Periodic",
                         "measurand": "Power.Active.Import", "unit": "W", "location": "Outlet"},
                    ],
                }
            ],
        }
        if self.transaction_id is not None:
            payload["transactionId"] = self.transaction_id
        return payload

    async def open(self, password: str) -> None:
        from websockets.asyncio.client import connect

        token = base64.b64encode(f"{self.id}:{password}".encode()).decode()
        self.ws = await connect(
            self.url,
            subprotocols=["ocpp1.6"],
            additional_headers=[("Authorization", f"Basic {token}")],
            compression=None,  # chargers rarely negotiate permessage-deflate
            open_timeout=120,
            ping_interval=None,
            proxy=None,
            **_source(),
            max_queue=4,
        )
        boot = await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Lean"})
        if boot.get("status") != "Accepted":
            raise RuntimeError(f"boot {boot.get('status')}")
        for connector in (0, 1):
            await self.call(
                "StatusNotification",
                {"connectorId": connector, "errorCode": "NoError", "status": "Available", "timestamp": now_iso()},
            )
        start = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": ID_TAG, "meterStart": self.energy, "timestamp": now_iso()},
        )
        self.transaction_id = start["transactionId"]

    meter_action = "MeterValues"  # what carries its readings (2.0.1: TransactionEvent)

    @property
    def is_open(self) -> bool:
        from websockets.protocol import State

        return self.ws is not None and self.ws.state is State.OPEN


class LeanCharger201(LeanCharger):
    """The same load in OCPP 2.0.1: boot, EVSE status, a TransactionEvent Started, then its
    readings as TransactionEvent Updated (seqNo counting), Heartbeats as before."""

    meter_action = "TransactionEvent"

    def __init__(self, charge_box_id: str, url: str):
        super().__init__(charge_box_id, url)
        self.tx = f"{charge_box_id}-tx"
        self.seq = itertools.count()

    def meter_values(self) -> dict:
        self.energy += random.randint(100, 400)
        return {
            "eventType": "Updated", "timestamp": now_iso(), "triggerReason": "MeterValuePeriodic",
            "seqNo": next(self.seq), "transactionInfo": {"transactionId": self.tx},
            "meterValue": [{"timestamp": now_iso(), "sampledValue": [
                {"value": self.energy, "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
                 "unitOfMeasure": {"unit": "Wh"}, "location": "Outlet"},
                {"value": round(random.uniform(7000, 11000), 1), "context": "Sample.Periodic",
                 "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}, "location": "Outlet"},
            ]}],
        }

    async def open(self, password: str) -> None:
        from websockets.asyncio.client import connect

        token = base64.b64encode(f"{self.id}:{password}".encode()).decode()
        self.ws = await connect(self.url, subprotocols=["ocpp2.0.1"],
                                additional_headers=[("Authorization", f"Basic {token}")], compression=None,
                                open_timeout=120, ping_interval=None, proxy=None, max_queue=4, **_source())
        boot = await self.call("BootNotification", {"chargingStation": {"vendorName": "Bench", "model": "Lean"},
                                                    "reason": "PowerUp"})
        if boot.get("status") != "Accepted":
            raise RuntimeError(f"boot {boot.get('status')}")
        await self.call("StatusNotification", {"timestamp": now_iso(), "connectorStatus": "Occupied",
                                               "evseId": 1, "connectorId": 1})
        await self.call("TransactionEvent", {
            "eventType": "Started", "timestamp": now_iso(), "triggerReason": "Authorized",
            "seqNo": next(self.seq), "transactionInfo": {"transactionId": self.tx},
            "idToken": {"idToken": ID_TAG, "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": now_iso(), "sampledValue": [
                {"value": self.energy, "context": "Transaction.Begin"}]}]})


async def _realistic(chargers: list[LeanCharger], seconds: float) -> dict:
    """Each charger: MeterValues every minute and a Heartbeat every 5 minutes, random phases."""
    latencies: list[float] = []
    slow: list[tuple[float, float, str]] = []  # (wall-clock send time, ms, action) of calls over SLOW_MS
    errors = 0
    loop = asyncio.get_running_loop()
    # A lead-in before the first call: starting thousands of tasks keeps this process's loop
    # busy for a moment, and replies arriving meanwhile would be timed late (the first runs
    # showed every slow call of the phase in its first second, whatever the server).
    t0 = loop.time() + LEAD_IN_S

    async def one(c: LeanCharger) -> None:
        nonlocal errors
        events = []
        t = random.uniform(0, METER_PERIOD)
        while t < seconds:
            events.append((t, c.meter_action))
            t += METER_PERIOD
        t = random.uniform(0, HEARTBEAT_PERIOD)
        while t < seconds:
            events.append((t, "Heartbeat"))
            t += HEARTBEAT_PERIOD
        for at, action in sorted(events):
            delay = t0 + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            payload = c.meter_values() if action == c.meter_action else {}
            sent = time.perf_counter()
            try:
                await c.call(action, payload)
            except Exception:
                errors += 1
                continue
            ms = (time.perf_counter() - sent) * 1000
            latencies.append(ms)
            if ms > SLOW_MS:
                slow.append((round(time.time() - ms / 1000, 3), round(ms, 1), action))

    await asyncio.gather(*(one(c) for c in chargers if c.is_open))
    return {"latencies": [round(x, 3) for x in latencies], "errors": errors, "slow": slow}


async def _saturate(chargers: list[LeanCharger], seconds: float) -> dict:
    """Closed loop: the next MeterValues as soon as the last one is answered."""
    calls = errors = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def one(c: LeanCharger) -> None:
        nonlocal calls, errors
        while loop.time() < end:
            try:
                await c.call(c.meter_action, c.meter_values())
                calls += 1
            except Exception:
                errors += 1
                await asyncio.sleep(0.1)

    started = loop.time()
    await asyncio.gather(*(one(c) for c in chargers if c.is_open))
    return {"calls": calls, "errors": errors, "seconds": loop.time() - started}


async def worker_main(args: argparse.Namespace) -> None:
    global SOURCE_ADDRESS
    SOURCE_ADDRESS = args.source_address
    raise_nofile()
    # A mixed fleet: every second charger (even k) speaks OCPP 2.0.1.
    chargers = [(LeanCharger201 if args.mixed and k % 2 == 0 else LeanCharger)(f"{args.prefix}{k:05d}", args.url)
                for k in range(args.first, args.first + args.count)]
    gate = asyncio.Semaphore(200)  # handshakes in flight, so the start is a ramp, not a storm
    failures: dict[str, int] = {}

    async def open_one(c: LeanCharger) -> None:
        # Refused or dropped handshakes are retried with backoff, as real chargers do.
        for attempt in range(6):
            async with gate:
                try:
                    await c.open(args.password)
                    return
                except Exception as exc:
                    key = f"{type(exc).__name__}: {str(exc)[:80]}"
                    failures[key] = failures.get(key, 0) + 1
                    if c.ws is not None:
                        await c.ws.close()
                        c.ws = None
            await asyncio.sleep(random.uniform(1, 2 ** (attempt + 1)))

    await asyncio.gather(*(open_one(c) for c in chargers))
    emit({"event": "connected", "ok": sum(c.is_open for c in chargers), "failures": failures})
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "realistic":
            emit({"event": "realistic", **await _realistic(chargers, cmd["seconds"])})
        elif cmd["cmd"] == "saturate":
            emit({"event": "saturate", **await _saturate(chargers, cmd["seconds"])})
        elif cmd["cmd"] == "status":
            emit({"event": "status", "open": sum(c.is_open for c in chargers)})
        elif cmd["cmd"] == "quit":
            break
    await asyncio.gather(*(c.ws.close() for c in chargers if c.ws is not None), return_exceptions=True)


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _source() -> dict:
    return {"local_addr": (SOURCE_ADDRESS, 0)} if SOURCE_ADDRESS else {}


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (`polaris ocpp --workers N` is a parent and N workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def rss_kib(pid: int) -> int:
    """VmRSS of the process and its children, summed."""
    path = Path(f"/proc/{pid}/status")
    if not path.exists():
        raise RuntimeError(f"the server process {pid} is gone (it exited or was killed); see its log")
    total = 0
    for p in process_tree(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its children, summed."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def wait_port(port: int, proc: asyncio.subprocess.Process, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server not listening on {port} after {within:g} s")


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    async def send(self, cmd: dict) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    async def read(self) -> dict:
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load worker exited (code {await self.proc.wait()})")
        return json.loads(line)


async def start_workers(url: str, n: int, per_worker: int, prefix: str, mixed: bool = False,
                        sources: list[str] | None = None) -> list[Worker]:
    workers = []
    for i in range(math.ceil(n / per_worker)):
        first = 1 + i * per_worker
        count = min(per_worker, n - i * per_worker)
        source = ["--source-address", sources[i % len(sources)]] if sources else []
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", "--url", url, "--first", str(first), "--count", str(count),
            "--prefix", prefix, "--password", CHARGER_KEY, *(["--mixed"] if mixed else []), *source,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        workers.append(Worker(proc))
    return workers


async def all_workers(workers: list[Worker], cmd: dict | None) -> list[dict]:
    if cmd is not None:
        await asyncio.gather(*(w.send(cmd) for w in workers))
    return list(await asyncio.gather(*(w.read() for w in workers)))


@dataclass
class Result:
    name: str
    chargers: int
    connected: int = 0
    held_at_end: int = 0
    connect_seconds: float = 0.0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    rss_end_kib: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    realistic_calls: int = 0
    realistic_errors: int = 0
    saturation_calls_per_s: float = 0.0
    saturation_errors: int = 0
    saturation_cpu_s: float = 0.0
    load_cpu_s: float = 0.0
    idle_cpu: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def per_connection_kib(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connected if self.connected else float("nan")


async def drive(name: str, server: asyncio.subprocess.Process, url: str, args: argparse.Namespace) -> Result:
    res = Result(name, args.chargers)
    await asyncio.sleep(1.0)  # settle after start-up imports and pool warm-up
    res.rss_before_kib = rss_kib(server.pid)
    t0 = time.monotonic()
    sources = [a.strip() for a in args.source_addresses.split(",") if a.strip()] if args.source_addresses else None
    workers = await start_workers(url, args.chargers, args.per_worker, args.prefix, args.mixed, sources)
    try:
        for r in await all_workers(workers, None):
            res.connected += r["ok"]
            for k, v in r["failures"].items():
                res.failures[k] = res.failures.get(k, 0) + v
        res.connect_seconds = time.monotonic() - t0
        await asyncio.sleep(2.0)
        res.rss_after_kib = rss_kib(server.pid)
        # What holding the connections costs with no OCPP traffic at all (keepalive pings, GC, timers).
        idle0 = cpu_seconds(server.pid)
        await asyncio.sleep(IDLE_SECONDS)
        res.idle_cpu = (cpu_seconds(server.pid) - idle0) / IDLE_SECONDS
        print(f"  {name}: {res.connected}/{args.chargers} connected in {res.connect_seconds:.1f} s", file=sys.stderr)

        print(f"  {name}: realistic rate for {args.realistic_seconds:g} s", file=sys.stderr)
        lat: list[float] = []
        slow: list[list] = []
        phase_start = time.time()
        for r in await all_workers(workers, {"cmd": "realistic", "seconds": args.realistic_seconds}):
            lat += r["latencies"]
            slow += r["slow"]
            res.realistic_errors += r["errors"]
        res.notes.append(f"realistic phase {clock(phase_start)}-{clock(time.time())} UTC")
        res.notes += slow_call_summary(slow)
        res.realistic_calls = len(lat)
        if lat:
            q = statistics.quantiles(lat, n=100, method="inclusive")
            res.p50_ms, res.p99_ms, res.max_ms = statistics.median(lat), q[98], max(lat)

        print(f"  {name}: closed loop for {args.saturation_seconds:g} s", file=sys.stderr)
        cpu0 = cpu_seconds(server.pid)
        load0 = sum(cpu_seconds(w.proc.pid) for w in workers)
        total = 0
        elapsed = 0.0
        for r in await all_workers(workers, {"cmd": "saturate", "seconds": args.saturation_seconds}):
            total += r["calls"]
            res.saturation_errors += r["errors"]
            elapsed = max(elapsed, r["seconds"])
        res.saturation_cpu_s = cpu_seconds(server.pid) - cpu0
        res.load_cpu_s = sum(cpu_seconds(w.proc.pid) for w in workers) - load0
        res.saturation_calls_per_s = total / elapsed if elapsed else 0.0
        res.held_at_end = sum(r["open"] for r in await all_workers(workers, {"cmd": "status"}))
        res.rss_end_kib = rss_kib(server.pid)
    finally:
        for w in workers:
            try:
                await w.send({"cmd": "quit"})
            except (ConnectionError, RuntimeError):
                pass
        for w in workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 30)
            except TimeoutError:
                w.proc.kill()
    return res


def clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3]


def slow_call_summary(slow: list[list], top: int = 6) -> list[str]:
    """Slow calls grouped by the second they were sent in: stalls show up as clusters."""
    if not slow:
        return [f"no realistic-phase call over {SLOW_MS:g} ms"]
    by_second: dict[int, list[float]] = {}
    for sent, ms, _action in slow:
        by_second.setdefault(int(sent), []).append(ms)
    worst = sorted(by_second.items(), key=lambda kv: -len(kv[1]))[:top]
    lines = [f"{len(slow)} realistic-phase calls over {SLOW_MS:g} ms, in {len(by_second)} distinct seconds; busiest:"]
    for second, values in sorted(worst):
        lines.append(f"  sent {clock(second)[:8]}: {len(values)} calls, worst {max(values):.0f} ms")
    return lines


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def bench_reference(args: argparse.Namespace, *, tuned: bool = False) -> Result:
    port = free_port()
    extra = ["--sync-validation"] if tuned else []
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "reference_server.py"), "--port", str(port), *extra,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_port(port, server)
        return await drive("ref-tuned" if tuned else "reference", server, f"ws://127.0.0.1:{port}/ocpp", args)
    finally:
        await stop_process(server)


# ---------------------------------------------------------------------------------- our server


async def hook_receiver() -> tuple[object, int, dict[str, int]]:
    """The web process's hooks as far as the OCPP server can tell: pre-authorize says no override."""
    from aiohttp import web

    counts = {"pre-authorize": 0, "meter-values": 0}

    async def pre_authorize(request: web.Request) -> web.Response:
        await request.read()
        counts["pre-authorize"] += 1
        return web.json_response({"override": None})

    async def meter_values(request: web.Request) -> web.Response:
        await request.read()
        counts["meter-values"] += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/ocpp/pre-authorize", pre_authorize)
    app.router.add_post("/api/ocpp/meter-values", meter_values)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, counts


async def prepare_database(n: int, prefix: str) -> tuple[str, str]:
    """A fresh, migrated database with the chargers and the id tag registered; (server dsn, db dsn)."""
    from polaris.db.pool import connect
    from polaris.db.repos import charge_boxes, customers, id_tags

    server_dsn, db_dsn = await create_database("ocpp")
    conn = await connect(db_dsn)
    try:
        ids = [f"{prefix}{k:05d}" for k in range(1, n + 1)]
        for i in range(0, n, 1000):  # one transaction per thousand: each charger's key is hashed
            await charge_boxes.add_charge_boxes(conn, ids[i : i + 1000], CHARGER_KEY, description="bench")
        await customers.add_customer(conn, "bench@example.com", name="Bench")
        await id_tags.add_id_tag(conn, ID_TAG, customer_email="bench@example.com")
    finally:
        await conn.close()
    return server_dsn, db_dsn


PROFILED_SERVER = """
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = ["polaris", *sys.argv[2:]]
profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    runpy.run_module("polaris", run_name="__main__")
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(out)
"""


UVLOOP_SERVER = """
import runpy, sys
import uvloop
uvloop.install()
sys.argv = ["polaris", *sys.argv[1:]]
runpy.run_module("polaris", run_name="__main__")
"""


async def bench_polaris(args: argparse.Namespace) -> Result:
    print("  polaris: preparing the database", file=sys.stderr)
    server_dsn, db_dsn = await prepare_database(args.chargers, args.prefix)
    runner, hook_port, hook_counts = await hook_receiver()
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCPP_", "STEVE_", "WEB_"))}
    env.update(
        DATABASE_URL=db_dsn,
        STEVE_API_KEY=secrets.token_hex(16),
        STEVE_PREAUTH_HMAC_KEY=secrets.token_hex(24),
        STEVE_METERVALUE_HMAC_KEY=secrets.token_hex(24),
        AUTH_SECRET=secrets.token_hex(24),
        WEB_INTERNAL_URL=f"http://127.0.0.1:{hook_port}",
        # Every bench charger connects from 127.0.0.1: the per-address cap (256 by default,
        # against a flood from one address) would refuse all but the first few hundred.
        OCPP_MAX_CONNECTIONS_PER_ADDRESS=str(args.chargers + 100),
        LOG_LEVEL="WARNING",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    log_path = ROOT / ".polaris" / "bench" / "polaris-ocpp.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    argv = ["ocpp", "--host", "127.0.0.1", "--port", str(port), "--api-port", str(api_port)]
    if args.polaris_workers > 1:  # processes sharing the ports (SO_REUSEPORT); figures sum them
        argv += ["--workers", str(args.polaris_workers)]
    # CPU time, not wall time: on a busy machine wall time mostly measures waiting for a core.
    if args.profile:
        launcher = ["-c", PROFILED_SERVER, args.profile, *argv]
    elif args.server_loop == "uvloop":  # a measurement: uvloop is not a dependency (PYTHONPATH must reach it)
        launcher = ["-c", UVLOOP_SERVER, *argv]
    else:
        launcher = ["-m", "polaris", *argv]
    server = await asyncio.create_subprocess_exec(
        sys.executable, *launcher, env=env, cwd=str(ROOT), stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
    )
    try:
        await wait_port(port, server)
        res = await drive("polaris", server, f"ws://127.0.0.1:{port}/ocpp", args)
        res.notes.append(
            f"hooks received: {hook_counts['pre-authorize']} pre-authorize, {hook_counts['meter-values']} meter-values"
        )
        return res
    finally:
        await stop_process(server)
        log_file.close()
        warnings = Counter()
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("level") in ("warning", "error", "critical"):
                warnings[f"{event['level']}: {event.get('event')}"] += 1
        for k, v in warnings.most_common(8):
            print(f"  polaris server log: {v} x {k}", file=sys.stderr)
        print(f"  polaris server log: {log_path}", file=sys.stderr)
        if args.profile:
            import pstats

            print(f"  polaris server profile ({args.profile}), by own time:", file=sys.stderr)
            stats = pstats.Stats(args.profile, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)
        await runner.cleanup()
        await drop_database(server_dsn, db_dsn)


# ---------------------------------------------------------------------------------- report


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nOCPP benchmark: {args.chargers:,} chargers, realistic phase {args.realistic_seconds:g} s, "
          f"closed loop {args.saturation_seconds:g} s, {os.cpu_count()} cores, "
          f"load average now {os.getloadavg()[0]:.1f} (other work on the machine skews the figures)")
    rows = [
        ("connections held (after all phases)", lambda r: f"{r.held_at_end:,}/{r.chargers:,}"),
        ("connect + boot + start tx, all chargers", lambda r: f"{r.connect_seconds:.1f} s"),
        ("server RSS before / after connecting", lambda r: f"{r.rss_before_kib / 1024:.0f} / {r.rss_after_kib / 1024:.0f} MiB"),
        ("server RSS per connection", lambda r: f"{fmt(r.per_connection_kib)} KiB"),
        ("server RSS at the end", lambda r: f"{r.rss_end_kib / 1024:.0f} MiB"),
        (f"server CPU holding them idle ({IDLE_SECONDS:g} s)", lambda r: f"{r.idle_cpu:.0%}"),
        ("realistic rate: calls / errors", lambda r: f"{r.realistic_calls:,} / {r.realistic_errors}"),
        ("realistic rate: p50 / p99 / max latency", lambda r: f"{fmt(r.p50_ms)} / {fmt(r.p99_ms)} / {fmt(r.max_ms)} ms"),
        ("closed loop: MeterValues per second", lambda r: f"{fmt(r.saturation_calls_per_s, 0)}"),
        ("closed loop: errors", lambda r: f"{r.saturation_errors}"),
        ("closed loop: server CPU per 1000 calls", lambda r: (
            f"{r.saturation_cpu_s / (r.saturation_calls_per_s * args.saturation_seconds) * 1000:.2f} s"
            if r.saturation_calls_per_s else "-")),
        ("closed loop: CPU used, server / load", lambda r: (
            f"{r.saturation_cpu_s / args.saturation_seconds:.0%} / {r.load_cpu_s / args.saturation_seconds:.0%}")),
    ]
    width = max(len(label) for label, _ in rows) + 2
    print(" " * width + "".join(f"{r.name:>22}" for r in results))
    for label, f in rows:
        print(label.ljust(width) + "".join(f"{f(r):>22}" for r in results))
    by = {r.name: r for r in results}
    if "polaris" in by and "reference" in by:
        ours, ref = by["polaris"], by["reference"]
        if ref.saturation_calls_per_s:
            print(f"\nthroughput, ours / reference: {ours.saturation_calls_per_s / ref.saturation_calls_per_s:.2f}x "
                  f"(target >= 1.0x; ours persists every MeterValues before answering)")
        if ref.saturation_calls_per_s and ours.saturation_calls_per_s:
            per_call = [r.saturation_cpu_s / (r.saturation_calls_per_s * args.saturation_seconds) for r in (ours, ref)]
            print(f"server CPU per call, ours / reference: {per_call[0] / per_call[1]:.2f}x "
                  "(less sensitive to other load on the machine than calls per second)")
        if ref.per_connection_kib == ref.per_connection_kib and ref.per_connection_kib > 0:
            print(f"memory per connection, ours / reference: {ours.per_connection_kib / ref.per_connection_kib:.2f}x")
    if "polaris" in by:
        ours = by["polaris"]
        print("targets (reported, not asserted):")
        print(f"  10,000 chargers held by one process: {'met' if ours.held_at_end >= 10_000 else 'not shown in this run'}"
              f" ({ours.held_at_end:,} held)")
        print(f"  <= 32 KiB per connection: {'met' if ours.per_connection_kib <= 32 else 'missed'} "
              f"({fmt(ours.per_connection_kib)} KiB)")
        print(f"  p99 < 100 ms at the realistic rate: {'met' if ours.p99_ms < 100 else 'missed'} ({fmt(ours.p99_ms)} ms)")
    for r in results:
        for k, v in r.failures.items():
            print(f"{r.name}: {v} connection attempt(s) failed (retried up to 5 times): {k}")
        for note in r.notes:
            print(f"{r.name}: {note}")


async def run_all(args: argparse.Namespace) -> list[Result]:
    from polaris.logs import configure_logging

    configure_logging("WARNING", "console")  # stdout carries the figures only
    raise_nofile()
    have_ours = importlib.util.find_spec("polaris.cli.ocpp") is not None
    results = []
    if args.server in ("both", "reference"):
        print("benchmarking the reference server", file=sys.stderr)
        results.append(await bench_reference(args))
        if args.tuned_reference:
            print("benchmarking the reference server, schema validation on the loop", file=sys.stderr)
            results.append(await bench_reference(args, tuned=True))
    if args.server in ("both", "polaris"):
        if have_ours:
            print("benchmarking polaris ocpp", file=sys.stderr)
            results.append(await bench_polaris(args))
        else:
            print("polaris ocpp does not exist yet (no polaris.cli.ocpp): reference server only", file=sys.stderr)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chargers", type=int, default=2000, help="simulated chargers (default 2000)")
    p.add_argument("--server", choices=["both", "polaris", "reference"], default="both")
    p.add_argument("--realistic-seconds", type=float, default=30, help="length of the realistic-rate phase")
    p.add_argument("--saturation-seconds", type=float, default=15, help="length of the closed-loop phase")
    p.add_argument("--per-worker", type=int, default=9000, help="connections per load process (at most ~19,000)")
    p.add_argument("--prefix", default="BENCH", help="charge box id prefix")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--mixed", action="store_true",
                   help="a mixed fleet: every second charger speaks OCPP 2.0.1 (TransactionEvent for its readings)")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="run our server under cProfile, write the stats to FILE and print the top functions "
        "(a diagnostic run: the profiler slows the server down)",
    )
    p.add_argument(
        "--server-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of our server (uvloop: a comparison run; install it where PYTHONPATH reaches, "
        "e.g. uv pip install --target /tmp/uvl uvloop)",
    )
    p.add_argument(
        "--tuned-reference",
        action="store_true",
        help="also measure the reference server with schema validation on the event loop "
        "(the library validates in a thread pool by default, which the GIL makes slow)",
    )
    # internal: a load worker process
    p.add_argument("--polaris-workers", type=int, default=1,
                   help="run our server as `polaris ocpp --workers N` (memory and CPU are summed over them)")
    p.add_argument("--source-addresses", metavar="A,B",
                   help="local addresses the load workers connect from, one per worker in turn "
                        "(e.g. 127.0.0.1,127.0.0.2: one address has ~28,000 ports towards one server port)")
    p.add_argument("--source-address", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--password", default=CHARGER_KEY, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker and not 1 <= args.per_worker <= 19_000:
        p.error("--per-worker must be between 1 and 19000 (20,000 open files per process here)")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        asyncio.run(worker_main(arguments))
    else:
        figures = asyncio.run(run_all(arguments))
        report(figures, arguments)
        if arguments.json:
            Path(arguments.json).write_text(json.dumps(
                [{**r.__dict__, "per_connection_kib": r.per_connection_kib} for r in figures], indent=2, default=str
            ))
