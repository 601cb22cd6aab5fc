"""The whole stack on loopback, started with the commands the containers run, checked the way
on-call checks production: `polaris doctor`, `polaris health` and `polaris smoke` green; then
`health` critical once the OCPP server is stopped, and `doctor` failing on a weak AUTH_SECRET.

Lago is the local fake speaking its HTTP API; the email worker is left unset (mail waits in the
outbox, which doctor reports as a warning, not a blocker). Public DNS cannot be reached from a
test, so doctor runs in-process with a resolver answering for the example hostnames and a
meminfo of a 4 GB host; everything else runs as `python -m polaris ...` subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from polaris.config import Settings
from polaris.ops import doctor
from polaris.sim.lago import FakeLago
from tests.ports import free_ports

LAGO_KEY = "lago-stack-key-0123456789"
START_TIMEOUT_S = 60


@dataclass
class Stack:
    env: dict[str, str]
    cwd: Path
    web_url: str
    ocpp_ws_url: str
    ocpp_api_url: str
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    async def start(self, name: str, *args: str) -> None:
        with (self.cwd / f"{name}.log").open("wb") as log:
            self.procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "polaris", *args, env=self.env, cwd=self.cwd,
                stdout=log, stderr=subprocess.STDOUT,
            )

    async def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.cwd.glob("*.log")))

    async def polaris(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polaris", *args, env={**self.env, **(env or {})}, cwd=self.cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def _until_answers(url: str, stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while True:
            for name, proc in stack.procs.items():
                if proc.returncode is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}\n{stack.logs()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} did not answer in {START_TIMEOUT_S} s\n{stack.logs()}")
            await asyncio.sleep(0.2)

@pytest.fixture
async def lago():
    fake = FakeLago(api_key=LAGO_KEY)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def stack(db_dsn, lago, tmp_path):
    web_port, ocpp_port, api_port = free_ports(3)
    base = {k: v for k, v in os.environ.items() if k not in Settings.model_fields and k != "OCPP_HOST"}
    env = {
        **base,
        "DATABASE_URL": db_dsn,
        "AUTH_SECRET": secrets.token_hex(32),
        "CF_EMAIL_WORKER_SECRET": secrets.token_hex(32),
        "STEVE_PREAUTH_HMAC_KEY": secrets.token_hex(32),
        "STEVE_METERVALUE_HMAC_KEY": secrets.token_hex(32),
        "STEVE_API_KEY": secrets.token_hex(24),
        # The production configuration: https hostnames on one apex (nobody resolves them here:
        # internal calls go to loopback ports, as they go to container names in compose).
        "ADMIN_BASE_URL": "https://manage.example.com",
        "CUSTOMER_BASE_URL": "https://polaris.example.com",
        "COOKIE_DOMAIN": ".example.com",
        "WEB_PORT": str(web_port),
        "OCPP_PORT": str(ocpp_port),
        "OCPP_API_PORT": str(api_port),
        "WEB_INTERNAL_URL": f"http://127.0.0.1:{web_port}",
        "STEVE_BASE_URL": f"http://127.0.0.1:{api_port}",
        "LAGO_API_URL": lago.url,
        "LAGO_API_KEY": LAGO_KEY,
        "LOG_FORMAT": "json",
    }
    s = Stack(env=env, cwd=tmp_path, web_url=f"http://127.0.0.1:{web_port}",
              ocpp_ws_url=f"ws://127.0.0.1:{ocpp_port}/ocpp", ocpp_api_url=f"http://127.0.0.1:{api_port}")
    # docker-compose.yml: a one-shot migrate, then the services that wait for it.
    migrate = await s.polaris("migrate")
    assert migrate.returncode == 0, migrate.stderr
    try:
        await s.start("ocpp", "ocpp")
        await s.start("web", "web")
        await s.start("sync", "sync")
        await _until_answers(f"{s.web_url}/readyz", s)
        await _until_answers(f"{s.ocpp_api_url}/healthz", s)
        yield s
    finally:
        for name in list(s.procs):
            await s.stop(name)


async def _doctor(stack: Stack, tmp_path: Path, **overrides: str):
    async def example_dns(host: str) -> list[str]:
        return ["127.0.0.1"] if host.endswith(".example.com") else await doctor.system_resolve(host)

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        3900000 kB\n")  # what a 4 GB VPS reports
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    env = {k: v for k, v in {**stack.env, **overrides}.items() if k in Settings.model_fields}
    ctx = doctor.DoctorContext(
        settings=Settings(_env_file=None, **env), ocpp_host="ocpp.example.com", timeout=5,
        resolve=example_dns, meminfo=meminfo, search_path=str(empty_bin),
    )
    return await doctor.run_checks(ctx)


async def test_doctor_health_and_smoke_green_then_ocpp_down_is_critical(stack, lago, tmp_path, conn):
    results = await _doctor(stack, tmp_path)
    assert not doctor.blocking(results), doctor.render_text(results)
    # The same deployment with a weak AUTH_SECRET is not ready, and doctor says which variable.
    weak = await _doctor(stack, tmp_path, AUTH_SECRET="changeme")
    assert doctor.blocking(weak)
    (check,) = [r for r in weak if r.name == "secrets"]
    assert check.status == "fail" and "AUTH_SECRET looks typed" in check.message

    health = await stack.polaris("health", "--json")
    report = json.loads(health.stdout)
    assert health.returncode == 0, health.stdout + health.stderr
    assert report["status"] == "ok"

    smoke = await stack.polaris("smoke", "--ocpp-url", stack.ocpp_ws_url, "--json")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr + stack.logs()
    result = json.loads(smoke.stdout)
    assert result["ok"] is True and all(step["ok"] for step in result["steps"])
    # It cleaned up after itself and billed nothing.
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charge_boxes WHERE is_test") == 0
    assert await conn.fetchval("SELECT count(*) FROM ocpp.transactions") == 0
    assert lago.events == {}

    assert await stack.stop("ocpp") == 0  # SIGTERM: a clean exit
    health = await stack.polaris("health", "--json")
    assert health.returncode == 2, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["status"] == "critical"
    ocpp = next(c for c in report["checks"] if c["name"] == "ocpp")
    assert ocpp["status"] == "critical"
    text = await stack.polaris("health")
    assert text.returncode == 2 and "ocpp" in text.stdout.lower()
