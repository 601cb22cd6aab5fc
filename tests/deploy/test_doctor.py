"""`polaris doctor` against local stand-ins: a fake Lago and a fake email worker speaking HTTP on
127.0.0.1, the test database, a tmp meminfo, and a resolver that answers for the example
hostnames (public DNS is not reachable from tests)."""

import asyncio
import json
import os
import secrets
import socket
import stat
import subprocess
import sys

import pytest
from aiohttp import web

from polaris.config import Settings
from polaris.ops import doctor
from polaris.ops.doctor import DoctorContext, run_checks

LAGO_KEY = "lago-test-key-0123456789"
METRIC = "ev_charging_kwh"


@pytest.fixture
async def fake_lago(aiohttp_server):
    """Lago's API as far as doctor uses it: the root, and GET /api/v1/billable_metrics/{code}."""
    seen = []

    async def root(request):
        return web.json_response({"status": 404, "error": "Not Found"}, status=404)

    async def metric(request):
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {LAGO_KEY}":
            return web.json_response({"status": 401, "error": "Unauthorized"}, status=401)
        code = request.match_info["code"]
        if code != METRIC:
            return web.json_response(
                {"status": 404, "error": "Not Found", "code": "billable_metric_not_found"}, status=404
            )
        return web.json_response(
            {"billable_metric": {"lago_id": "1a2b", "name": "EV charging", "code": METRIC, "aggregation_type": "sum_agg"}}
        )

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/api/v1/billable_metrics/{code}", metric)
    server = await aiohttp_server(app)
    server.seen_auth = seen
    return server


@pytest.fixture
async def fake_email_worker(aiohttp_server):
    state = {"status": 200}

    async def health(request):
        return web.json_response({"ok": state["status"] == 200}, status=state["status"])

    app = web.Application()
    app.router.add_get("/health", health)
    server = await aiohttp_server(app)
    server.state = state
    return server


def strong_secrets():
    return {
        "AUTH_SECRET": secrets.token_hex(32),
        "CF_EMAIL_WORKER_SECRET": secrets.token_hex(32),
        "STEVE_PREAUTH_HMAC_KEY": secrets.token_hex(32),
        "STEVE_METERVALUE_HMAC_KEY": secrets.token_hex(32),
        "STEVE_API_KEY": secrets.token_hex(24),
    }


@pytest.fixture
def prod_env(db_dsn, fake_lago, fake_email_worker):
    """A production configuration, with Lago and the email worker replaced by the fakes."""
    return {
        "DATABASE_URL": db_dsn,
        **strong_secrets(),
        "ADMIN_BASE_URL": "https://manage.example.com",
        "CUSTOMER_BASE_URL": "https://polaris.example.com",
        "COOKIE_DOMAIN": ".example.com",
        "LAGO_API_URL": str(fake_lago.make_url("/")).rstrip("/"),
        "LAGO_API_KEY": LAGO_KEY,
        "CF_EMAIL_WORKER_URL": str(fake_email_worker.make_url("/")).rstrip("/"),
        "EMAIL_FROM": "Polaris Express <noreply@example.com>",
    }


async def example_dns(host):
    """Public DNS as it will answer once the operator's records exist; anything else: the system's."""
    if host.endswith(".example.com"):
        return ["127.0.0.1"]
    return await doctor.system_resolve(host)


@pytest.fixture
def meminfo(tmp_path):
    def make(kib):
        path = tmp_path / f"meminfo-{kib}"
        path.write_text(f"MemTotal:       {kib} kB\nMemFree:         1000 kB\n")
        return path

    return make


@pytest.fixture
def ctx(prod_env, meminfo, tmp_path):
    def make(**overrides):
        env = {**prod_env, **overrides}
        settings = Settings(_env_file=None, **{k: v for k, v in env.items() if v is not None})
        empty_bin = tmp_path / "empty-bin"
        empty_bin.mkdir(exist_ok=True)
        return DoctorContext(
            settings=settings,
            ocpp_host="ocpp.example.com",
            timeout=5,
            resolve=example_dns,
            meminfo=meminfo(3_900_000),  # what a 4 GB VPS reports
            search_path=str(empty_bin),
        )

    return make


def by_name(results):
    return {r.name: r for r in results}


async def test_green_path_nothing_blocks(ctx, fake_lago):
    results = await run_checks(ctx())
    statuses = {r.name: r.status for r in results}
    assert statuses == {
        "settings": "ok",
        "secrets": "ok",
        "hostnames": "ok",
        "dns": "ok",
        "lago_reachable": "ok",
        "lago_metric": "ok",
        "email_worker": "ok",
        "postgres": "ok",
        "memory": "ok",
        "docker": "warn",  # no docker binary on the test's PATH
    }, [(r.name, r.message) for r in results if r.status != "ok"]
    assert not doctor.blocking(results)
    r = by_name(results)
    assert "PostgreSQL 1" in r["postgres"].message and "schema is current" in r["postgres"].message
    assert "ev_charging_kwh exists (EV charging)" in r["lago_metric"].message
    assert fake_lago.seen_auth == [f"Bearer {LAGO_KEY}"], "the key goes to Lago as a bearer token"
    text = doctor.render_text(results)
    assert "ready." in text and "[FAIL]" not in text


async def test_a_short_auth_secret_is_a_warning_with_a_fix(ctx):
    # Shorter than 32 but random-looking, as the original product accepted: the services run.
    results = by_name(await run_checks(ctx(AUTH_SECRET="9f8e7d6c5b4a3210fedc")))
    assert results["settings"].status == "ok"
    assert results["secrets"].status == "warn"
    assert "AUTH_SECRET is 20 characters, shorter than the 32 recommended" in results["secrets"].message
    assert "polaris secrets" in results["secrets"].fix
    # A missing one still stops the services.
    results = by_name(await run_checks(ctx(AUTH_SECRET=None)))
    assert results["settings"].status == "fail" and "AUTH_SECRET is not set" in results["settings"].message


async def test_lago_url_with_api_v1_works_and_doctor_says_so(ctx, fake_lago):
    base = ctx().settings.LAGO_API_URL
    r = by_name(await run_checks(ctx(LAGO_API_URL=base.rstrip("/") + "/api/v1/")))["lago_metric"]
    assert r.status == "ok" and "ev_charging_kwh exists" in r.message, r.message
    assert "ends in /api/v1" in r.message and f"uses {base.rstrip('/')}" in r.message


async def test_typed_or_reused_secrets_fail(ctx):
    same = secrets.token_hex(32)
    results = by_name(
        await run_checks(ctx(AUTH_SECRET="changeme" * 5, STEVE_PREAUTH_HMAC_KEY=same, STEVE_METERVALUE_HMAC_KEY=same))
    )
    r = results["secrets"]
    assert r.status == "fail"
    assert "AUTH_SECRET looks typed" in r.message
    assert "STEVE_METERVALUE_HMAC_KEY = STEVE_PREAUTH_HMAC_KEY" in r.message
    assert same not in r.message and "changeme" not in r.message, "values are never shown"


async def test_hostnames_must_share_the_cookie_apex(ctx):
    r = by_name(await run_checks(ctx(ADMIN_BASE_URL="https://manage.example.net")))["hostnames"]
    assert r.status == "fail" and "does not cover manage.example.net" in r.message
    r = by_name(await run_checks(ctx(CUSTOMER_BASE_URL="http://localhost:8000")))["hostnames"]
    assert r.status == "fail" and "not https://" in r.message and "cannot reach" in r.message
    r = by_name(await run_checks(ctx(COOKIE_DOMAIN=".com")))["hostnames"]
    assert r.status == "fail" and "top-level domain" in r.message
    c = ctx()
    c.ocpp_host = "127.0.0.1"
    r = await doctor.check_hostnames(c)
    assert r.status == "fail" and "OCPP_HOST is 127.0.0.1" in r.message
    c.ocpp_host = None
    r = await doctor.check_hostnames(c)
    assert r.status == "warn" and "OCPP_HOST is not set" in r.message


async def test_lago_key_refused_and_metric_missing(ctx):
    r = by_name(await run_checks(ctx(LAGO_API_KEY="wrong-key")))["lago_metric"]
    assert r.status == "fail" and "refused LAGO_API_KEY (HTTP 401)" in r.message
    r = by_name(await run_checks(ctx(LAGO_METRIC_CODE="kwh_typo")))["lago_metric"]
    assert r.status == "fail" and "no billable metric with code kwh_typo" in r.message
    assert "create a billable metric with code kwh_typo" in r.fix


async def test_unreachable_lago_and_email_worker_fail(ctx, unused_tcp_port, fake_email_worker):
    dead = f"http://127.0.0.1:{unused_tcp_port}"
    results = by_name(await run_checks(ctx(LAGO_API_URL=dead, CF_EMAIL_WORKER_URL=dead)))
    assert results["lago_reachable"].status == "fail" and "ConnectError" in results["lago_reachable"].message
    assert results["email_worker"].status == "fail"
    fake_email_worker.state["status"] = 503
    r = by_name(await run_checks(ctx()))["email_worker"]
    assert r.status == "fail" and "answered HTTP 503" in r.message


async def test_a_worker_without_a_sender_fails_and_says_so(ctx, fake_email_worker):
    # Production URLs and no EMAIL_FROM: there is no localhost stand-in to refuse later.
    r = by_name(await run_checks(ctx(EMAIL_FROM=None)))["email_worker"]
    assert r.status == "fail" and "EMAIL_FROM is not set" in r.message and "no mail is attempted" in r.message
    assert "EMAIL_FROM_ADMIN" in r.fix


async def test_no_email_worker_is_a_warning(ctx):
    r = by_name(await run_checks(ctx(CF_EMAIL_WORKER_URL=None)))["email_worker"]
    assert r.status == "warn" and "outbox" in r.message


async def test_postgres_unreachable_and_unmigrated(ctx, unused_tcp_port, empty_db_dsn):
    r = by_name(await run_checks(ctx(DATABASE_URL=f"postgresql://x@127.0.0.1:{unused_tcp_port}/db")))["postgres"]
    assert r.status == "fail" and "cannot reach the Postgres server" in r.message
    r = by_name(await run_checks(ctx(DATABASE_URL=empty_db_dsn)))["postgres"]
    assert r.status == "warn" and "not applied yet" in r.message


async def test_small_host_fails_memory(ctx, meminfo):
    c = ctx()
    c.meminfo = meminfo(2_000_000)
    r = await doctor.check_memory(c)
    assert r.status == "fail" and "1.9 GiB RAM" in r.message


async def test_dns_through_the_system_resolver(ctx, prod_env):
    c = ctx(ADMIN_BASE_URL="https://localhost", CUSTOMER_BASE_URL="https://localhost", LAGO_API_URL="http://127.0.0.1:1")
    c.resolve = doctor.system_resolve
    c.ocpp_host = "localhost"
    c.settings.CF_EMAIL_WORKER_URL = None
    r = await doctor.check_dns(c)
    assert r.status == "ok" and "localhost -> " in r.message


async def test_dns_failures_name_each_host(ctx):
    # A name missing from DNS, as the resolver reports it (no query leaves the machine in tests).
    async def nxdomain(host):
        if host == "ocpp.example.com":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "manage.example.com":
            await asyncio.sleep(10)
        return await example_dns(host)

    c = ctx()
    c.resolve = nxdomain
    c.timeout = 0.5
    r = await doctor.check_dns(c)
    assert r.status == "fail"
    assert "ocpp.example.com (Name or service not known)" in r.message
    assert "manage.example.com (no answer in 0.5 s)" in r.message
    assert "polaris.example.com" not in r.message
    assert "dig +short" in r.fix


def fake_docker(tmp_path, compose_output, compose_rc=0):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Docker version 27.3.1, build ce12230"; exit 0; fi\n'
        f'if [ "$1" = "compose" ]; then echo "{compose_output}"; exit {compose_rc}; fi\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


async def test_docker_versions(ctx, tmp_path):
    c = ctx()
    c.search_path = fake_docker(tmp_path, "Docker Compose version v2.29.7")
    r = await doctor.check_docker(c)
    assert (r.status, r.message) == ("ok", "Docker 27.3, compose 2.29.7")
    c.search_path = fake_docker(tmp_path, "docker: unknown command: docker compose", compose_rc=1)
    r = await doctor.check_docker(c)
    assert r.status == "fail" and "compose plugin" in r.fix


# A subprocess cannot take the fake resolver: only names /etc/hosts answers, so no DNS query leaves.
LOCAL_NAMES = {"ADMIN_BASE_URL": "https://localhost:8443", "CUSTOMER_BASE_URL": "https://localhost", "COOKIE_DOMAIN": ""}


async def polaris(*args, env, cwd):
    """Run the command without blocking the loop: the fakes answer it from this test's loop."""
    base = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**base, **env}, cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def test_cli_fails_on_weak_auth_secret(prod_env, tmp_path):
    env = {**prod_env, **LOCAL_NAMES, "AUTH_SECRET": "too-short", "OCPP_HOST": "localhost"}
    r = await polaris("doctor", "--timeout", "3", env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[FAIL] Secret strength: AUTH_SECRET looks typed, not generated" in r.stdout
    assert "AUTH_SECRET is 9 characters, shorter than the 32 recommended" in r.stdout
    assert "fix: replace them with generated values" in r.stdout
    assert "too-short" not in r.stdout + r.stderr


async def test_cli_json_is_one_document(prod_env, tmp_path):
    # .env in the working directory is read like the services read it (OCPP_HOST included).
    (tmp_path / ".env").write_text("OCPP_HOST=localhost\nAUTH_SECRET=short\n")
    env = {**{k: v for k, v in prod_env.items() if k != "AUTH_SECRET"}, **LOCAL_NAMES}
    r = await polaris("doctor", "--json", "--timeout", "3", env=env, cwd=tmp_path)
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["ready"] is False
    checks = {c["name"]: c for c in data["checks"]}
    assert list(checks) == [
        "settings", "secrets", "hostnames", "dns", "lago_reachable", "lago_metric",
        "email_worker", "postgres", "memory", "docker",
    ]
    assert checks["settings"]["status"] == "fail"
    assert checks["secrets"]["status"] == "fail"  # the .env's AUTH_SECRET was read
    assert "AUTH_SECRET is 5 characters, shorter than the 32 recommended" in checks["secrets"]["message"]
    assert checks["postgres"]["status"] == "ok"
    assert checks["lago_metric"]["status"] == "ok" and checks["email_worker"]["status"] == "ok"
    assert checks["hostnames"]["status"] == "fail"  # localhost is no production hostname
    assert checks["dns"]["status"] == "ok" and "localhost -> " in checks["dns"]["message"]
    assert {"name", "title", "status", "message", "fix"} <= set(checks["settings"])
