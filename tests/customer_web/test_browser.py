"""The whole journey in a real browser: headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium) against real `polaris web` and `polaris ocpp` processes and a simulated
charger.

request a link -> open it from the outbox -> confirm -> charger page -> start -> the live
kWh rises -> stop -> the session is in the history. Screenshots at a phone and a desktop
size are kept under .polaris/artifacts/browser/.

Without Chromium this test skips and says why; with POLARIS_REQUIRE_BROWSER=1 (CI) it fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from polaris.db.repos import charge_boxes
from polaris.sim.charger import SimulatedCharger
from tests.ports import free_port

from .conftest import CHARGER_KEY

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".polaris" / "artifacts" / "browser"
PHONE = (390, 844)
DESKTOP = (1366, 900)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(Path(p).name))]
    if missing:
        return (f"headless Chromium is not installed ({', '.join(missing)} missing); install it with "
                "`apt-get install -y chromium chromium-driver` to run the browser test")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install)"
    return None


@pytest.fixture
def chromium_available() -> None:
    reason = _browser_missing()
    if reason is None:
        return
    if os.environ.get("POLARIS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"POLARIS_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)

@pytest.fixture
def processes(settings, tmp_path) -> Iterator[dict[str, Any]]:
    """`polaris web` and `polaris ocpp` as separate processes on free ports."""
    web_port, ws_port, api_port = free_port(), free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLARIS_", "STEVE_", "CF_", "LAGO_"))}
    env.update({
        "DATABASE_URL": settings.database_url,
        "AUTH_SECRET": settings.AUTH_SECRET.get_secret_value(),
        "STEVE_PREAUTH_HMAC_KEY": settings.STEVE_PREAUTH_HMAC_KEY.get_secret_value(),
        "STEVE_METERVALUE_HMAC_KEY": settings.STEVE_METERVALUE_HMAC_KEY.get_secret_value(),
        "STEVE_API_KEY": settings.STEVE_API_KEY.get_secret_value(),
        "STEVE_BASE_URL": f"http://127.0.0.1:{api_port}",
        "WEB_INTERNAL_URL": web_url,
        "CUSTOMER_BASE_URL": web_url,
        "ADMIN_BASE_URL": f"http://admin.localhost:{web_port}",
        "LOG_LEVEL": "INFO",
    })
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, args in (("web", ["web", "--host", "127.0.0.1", "--port", str(web_port)]),
                       ("ocpp", ["ocpp", "--host", "127.0.0.1", "--port", str(ws_port),
                                 "--api-port", str(api_port)])):
        log = (ARTIFACTS / f"{name}.log").open("w")
        procs.append((subprocess.Popen([sys.executable, "-m", "polaris", *args], env=env, cwd=tmp_path,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    try:
        yield {"web_url": web_url, "ws_url": f"ws://127.0.0.1:{ws_port}/ocpp",
               "api_url": f"http://127.0.0.1:{api_port}"}
    finally:
        for proc, _log in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


async def _wait_healthy(url: str, within: float = 90) -> None:
    deadline = time.monotonic() + within
    last: Any = None
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
                    last = (r.status, await r.text())
            except aiohttp.ClientError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not come up ({last}); see {ARTIFACTS}/*.log")
            await asyncio.sleep(0.2)


def _driver(user_data_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={PHONE[0]},{PHONE[1]}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _page_error(driver) -> str | None:
    from selenium.webdriver.common.by import By

    errors = driver.find_elements(By.CSS_SELECTOR, ".error")
    return errors[0].text if errors else None


def _wait(what: str, predicate: Callable[[], Any], within: float = 45.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            value = predicate()
        except Exception:  # the element may be mid-reload
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


async def test_journey_in_chromium(chromium_available, processes, pool, make_customer, tmp_path):
    cust = await make_customer("driver@example.com", id_tag="CARD-DRV")
    async with pool.acquire() as conn:
        row = (await charge_boxes.add_charge_boxes(
            conn, ["BROWSER-1"], CHARGER_KEY, description="Harbour car park", site_name="Harbour",
        ))[0]
    await _wait_healthy(processes["web_url"] + "/readyz")
    await _wait_healthy(processes["api_url"] + "/healthz")
    sim = SimulatedCharger(processes["ws_url"], "BROWSER-1", CHARGER_KEY, id_tag="SIM-OWN", auto_sessions=False,
                           meter_interval=1, step_delay=0.2, session_seconds=3600, max_power_w=11_000)
    await sim.start(timeout=20)
    loop = asyncio.get_running_loop()

    def outbox_link() -> str | None:
        async def fetch() -> str | None:
            async with pool.acquire() as conn:
                return await conn.fetchval(
                    "SELECT text FROM app.email_outbox WHERE to_address = $1 AND category = 'magic-link' "
                    "ORDER BY id DESC LIMIT 1", cust.email)
        body = asyncio.run_coroutine_threadsafe(fetch(), loop).result(10)
        match = re.search(r"https?://\S+/auth/link/[A-Za-z0-9_-]+", body or "")
        return match.group(0) if match else None

    def walk() -> dict[str, Any]:
        from selenium.webdriver.common.by import By

        driver = _driver(tmp_path / "chromium-profile")
        shots: list[str] = []

        def shot(name: str) -> None:
            path = ARTIFACTS / f"{name}.png"
            driver.save_screenshot(str(path))
            shots.append(path.name)

        try:
            base = processes["web_url"]
            charger_url = f"{base}/c/{row['public_id']}"
            # The QR code opens the charger page; signed out, it offers to sign in.
            driver.get(charger_url)
            shot("phone-1-charger-signed-out")
            driver.find_element(By.ID, "signin-to-charge").click()
            _wait("sign-in form", lambda: driver.find_element(By.ID, "email"))
            driver.find_element(By.ID, "email").send_keys(cust.email)
            driver.find_element(By.CSS_SELECTOR, "form button").click()
            _wait("link sent", lambda: "Check your email" in driver.page_source)
            shot("phone-2-link-sent")
            link = _wait("the mail in the outbox", outbox_link)
            driver.get(link)
            _wait("confirm button", lambda: driver.find_element(By.ID, "confirm"))
            shot("phone-3-confirm")
            driver.find_element(By.ID, "confirm").click()
            _wait("back on the charger page", lambda: "per kWh" in driver.page_source)
            assert driver.current_url == charger_url
            shot("phone-4-charger-signed-in")
            driver.find_element(By.ID, "start").click()
            _wait("live session page", lambda: "/sessions/" in driver.current_url, 60)
            tx = int(driver.current_url.rstrip("/").rsplit("/", 1)[1].split("?")[0])
            energy = lambda: float(driver.find_element(By.ID, "energy").text)  # noqa: E731
            first = energy()
            rose = _wait("the kWh to rise without reloading", lambda: energy() > first and energy(), 60)
            shot("phone-5-live-session")
            driver.set_window_size(*DESKTOP)
            shot("desktop-1-live-session")
            driver.set_window_size(*PHONE)
            driver.find_element(By.ID, "stop").click()
            _wait("the stop to be answered", lambda: "Stop sent" in driver.page_source or _page_error(driver))
            assert "Stop sent" in driver.page_source, _page_error(driver)
            _wait("the session to finish", lambda: "Finished" in driver.page_source, 60)
            shot("phone-6-finished")
            driver.get(f"{base}/sessions")
            _wait("history", lambda: f"/sessions/{tx}" in driver.page_source)
            shot("phone-7-history")
            driver.set_window_size(*DESKTOP)
            shot("desktop-2-history")
            driver.get(f"{base}/sessions/{tx}")
            _wait("chart", lambda: driver.find_element(By.CSS_SELECTOR, "svg.chart"))
            shot("desktop-3-session-detail")
            return {"tx": tx, "first": first, "rose": rose, "shots": shots}
        except Exception:
            # Keep what the browser showed when it went wrong, next to the server logs.
            shot("failure")
            (ARTIFACTS / "failure.html").write_text(driver.page_source)
            raise
        finally:
            driver.quit()

    try:
        result = await asyncio.to_thread(walk)
    finally:
        await sim.stop()
    assert result["rose"] > result["first"]
    async with pool.acquire() as conn:
        tx = await conn.fetchrow("SELECT id_tag, stop_timestamp, stop_reason FROM ocpp.transactions WHERE id = $1",
                                 result["tx"])
    assert tx["id_tag"] == "CARD-DRV" and tx["stop_timestamp"] is not None and tx["stop_reason"] == "Remote"
    for name in result["shots"]:
        assert (ARTIFACTS / name).stat().st_size > 1000
