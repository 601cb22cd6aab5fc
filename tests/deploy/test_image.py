"""The container image without a Docker engine: the Dockerfile's rules, the runtime lock it
installs, and the per-role healthcheck it runs (exercised against real servers)."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from polaris.ops import healthcheck

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
IGNORE = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
TEST_ONLY = {"pytest", "hypothesis", "selenium", "schemathesis", "ruff", "check-jsonschema", "trustme"}


def instructions():
    """(instruction, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages():
    result, current = [], None
    for word, rest in instructions():
        if word == "FROM":
            current = {"from": rest, "steps": []}
            result.append(current)
        else:
            current["steps"].append((word, rest))
    return result


def test_multi_stage_on_python_slim():
    builder, runtime = stages()
    assert builder["from"] == "python:3.11-slim AS builder"
    assert runtime["from"] == "python:3.11-slim"


def test_builder_installs_the_hashed_lock_then_the_project():
    runs = [rest for word, rest in stages()[0]["steps"] if word == "RUN"]
    assert any("--require-hashes -r /tmp/requirements.lock" in r and "--no-deps" in r for r in runs)
    assert any("pip install --no-deps /src" in r for r in runs)


def test_runtime_is_non_root_and_copies_only_the_venv():
    steps = stages()[1]["steps"]
    copies = [rest for word, rest in steps if word == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    user = [rest for word, rest in steps if word == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    assert ("ENTRYPOINT", '["polaris"]') in steps
    health = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert health and 'CMD ["python", "-m", "polaris.ops.healthcheck"]' in health[0]


def test_every_copied_source_exists_and_is_in_the_build_context():
    allowed = [line[1:] for line in IGNORE.splitlines() if line.startswith("!")]
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert (ROOT / src).exists(), src
            assert any(src.rstrip("/") == a.rstrip("/") for a in allowed), f"{src} is excluded by the dockerignore"


def pins(path):
    """name -> (version, set of hashes) from a `uv pip compile --generate-hashes` file."""
    result, current = {}, None
    for line in Path(path).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", line)
        if m:
            current = m[1].lower().replace("_", "-")
            result[current] = (m[2], set())
        for h in re.findall(r"--hash=(sha256:[0-9a-f]{64})", line):
            result[current][1].add(h)
    return result


def test_runtime_lock_is_the_main_lock_without_test_extras():
    main = pins(ROOT / "requirements.lock")
    runtime = pins(ROOT / "deploy" / "requirements.lock")
    for name, (version, hashes) in runtime.items():
        assert name in main, f"{name} is not in requirements.lock"
        assert main[name][0] == version, f"{name} {version} != requirements.lock's {main[name][0]}"
        assert hashes and hashes <= main[name][1], f"{name}: hashes differ from requirements.lock"
    assert not TEST_ONLY & set(runtime), TEST_ONLY & set(runtime)
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.\-]+", dep)[0].lower().replace("_", "-")
        assert name in runtime, f"runtime dependency {name} is missing from deploy/requirements.lock"


# --- the healthcheck, against real servers ----------------------------------------------


@pytest.fixture
async def health_server(aiohttp_server):
    state = {"status": 200}

    async def healthz(request):
        return web.json_response({"ok": state["status"] == 200}, status=state["status"])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server = await aiohttp_server(app)
    server.state = state
    return server


async def run_healthcheck(*args, env):
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WEB_PORT", "OCPP_API_PORT")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris.ops.healthcheck", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**base, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode() + err.decode()


@pytest.mark.parametrize("role,port_var", [("web", "WEB_PORT"), ("ocpp", "OCPP_API_PORT")])
async def test_http_roles(health_server, unused_tcp_port, role, port_var):
    env = {port_var: str(health_server.port)}
    assert (await run_healthcheck(role, env=env))[0] == 0
    health_server.state["status"] = 503
    code, out = await run_healthcheck(role, env=env)
    assert code == 1 and "503" in out
    code, out = await run_healthcheck(role, env={port_var: str(unused_tcp_port)})
    assert code == 1


async def test_sync_role_checks_its_database(db_dsn, unused_tcp_port):
    assert (await run_healthcheck("sync", env={"DATABASE_URL": db_dsn}))[0] == 0
    code, out = await run_healthcheck("sync", env={"DATABASE_URL": f"postgresql://x@127.0.0.1:{unused_tcp_port}/db"})
    assert code == 1 and "database" in out


async def test_unknown_role_is_a_usage_error():
    assert (await run_healthcheck("frobnicate", env={}))[0] == 2


def test_role_is_read_from_pid1(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join([b"/opt/venv/bin/python", b"/opt/venv/bin/polaris", b"ocpp", b"--host", b"0.0.0.0", b""]))
    assert healthcheck.role_of_pid1(cmdline) == "ocpp"
    cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/polaris\0migrate\0")
    assert healthcheck.role_of_pid1(cmdline) is None
    assert healthcheck.check(None, env={}) == (True, "no long-running role to check")
    assert healthcheck.role_of_pid1(tmp_path / "missing") is None
