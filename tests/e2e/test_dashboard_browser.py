"""The dashboard in a real browser: headless Debian Chromium driven by Selenium through /usr/bin/chromedriver
(installed by ``scripts/install --dev``; no browser download). Logs in, opens the endpoint and batch-job pages
while work runs, watches them update, and checks screenshots for rendered data (pixels and text).

Set ``LAUNCH_DASHBOARD_SCREENSHOTS=DIR`` to keep the screenshots (``docs/dashboard.png`` comes from there)."""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch import LaunchClient
from tests.conftest import RunningServer
from tests.e2e.helpers import http, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 20  # seconds any one thing may take to show up

# the share of a screenshot's pixels that differ from its most common colour (the page background), and the
# number of distinct colours, measured in the page itself (no image library needed)
_INK_SCRIPT = """
const [png, done] = arguments;
const img = new Image();
img.onload = () => {
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, img.width, img.height).data;
  const counts = new Map();
  for (let i = 0; i < d.length; i += 4) {
    const c = (d[i] >> 3) << 10 | (d[i + 1] >> 3) << 5 | (d[i + 2] >> 3);
    counts.set(c, (counts.get(c) || 0) + 1);
  }
  let top = 0;
  for (const n of counts.values()) top = Math.max(top, n);
  done({ink: 1 - top / (d.length / 4), colours: counts.size, width: img.width, height: img.height});
};
img.onerror = () => done({ink: -1, colours: 0, width: 0, height: 0});
img.src = "data:image/png;base64," + png;
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing: scripts/install --dev installs them")
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install --dev)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager stays quiet and offline
    profile = tempfile.mkdtemp(prefix="launch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def text_of(driver: Any, element_id: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.ID, element_id).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def check_rendered(driver: Any, name: str, expected: list[str]) -> None:
    """A screenshot with real content (not a blank page) and the expected text on the page."""
    png = driver.get_screenshot_as_png()
    shots = os.environ.get("LAUNCH_DASHBOARD_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / f"{name}.png").write_bytes(png)
    measured = driver.execute_async_script(_INK_SCRIPT, base64.b64encode(png).decode())
    assert measured["width"] >= 1000 and measured["height"] >= 700, measured
    assert 0.1 < measured["ink"] < 0.95 and measured["colours"] > 20, \
        f"{name}: the screenshot looks blank or broken ({measured})"
    body = driver.find_element("tag name", "body").text
    for needle in expected:
        assert needle in body, f"{name}: {needle!r} is not on the page"


def test_dashboard_logs_in_and_shows_live_endpoint_and_batch_pages(
        browser: Any, server: RunningServer, alice: LaunchClient, alice_key: str, sync_toolbox: Any,
        toolbox_bundle: Any) -> None:
    from selenium.webdriver.common.by import By

    name = sync_toolbox.model_endpoint.name
    browser.get(f"{server.url}/dashboard")
    wait_for(browser, lambda d: d.find_element(By.ID, "api-key").is_displayed(), "the login form")
    browser.find_element(By.ID, "api-key").send_keys("lk_not-a-key")
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: "not valid" in text_of(d, "login-error"), "the refusal of a bad key")
    browser.find_element(By.ID, "api-key").clear()
    browser.find_element(By.ID, "api-key").send_keys(alice_key)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: name in text_of(d, "endpoints-table"), "the endpoint in the overview")
    assert text_of(browser, "who") == "alice"

    stop = threading.Event()

    def load() -> None:  # steady sync traffic while the pages are open (bounded: 2 minutes at most)
        client = http(server.url, alice_key)
        deadline = time.monotonic() + 120
        for i in itertools.count():
            if stop.wait(0.02) or time.monotonic() > deadline:
                return
            client.post(f"/v1/sync-tasks?model_endpoint_name={name}",
                        json={"args": {"op": "raise" if i % 10 == 0 else "double", "x": i}, "return_pickled": False})

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        browser.find_element(By.LINK_TEXT, name).click()
        wait_for(browser, lambda d: text_of(d, "requests-total").isdigit(), "the endpoint page")
        first = int(text_of(browser, "requests-total"))
        wait_for(browser, lambda d: text_of(d, "requests-total").isdigit()
                 and int(text_of(d, "requests-total")) > first, "the request count to go up live")
        wait_for(browser, lambda d: "ValueError" in text_of(d, "failures"), "a recent failure with its traceback")
        assert "READY" in text_of(browser, "status-history")
        assert "server" in text_of(browser, "cold-starts")  # the cold-start timeline of its worker
        check_rendered(browser, "endpoint", [name, "Latency", "Cold starts", "Creation logs", "worker compute"])
    finally:
        stop.set()
        worker.join(timeout=30)

    inputs = [{"op": "sleep", "x": 0.5} for _ in range(60)] + [{"op": "raise", "x": 1}]  # ≈ 8 s at 4 at a time
    job_id = alice.batch_async_request(toolbox_bundle, inputs=inputs)
    browser.get(f"{server.url}/dashboard#/")
    wait_for(browser, lambda d: job_id[:12] in text_of(d, "batch-table"), "the batch job in the overview")
    check_rendered(browser, "overview", ["Endpoints", "Batch jobs", name, toolbox_bundle.name])
    browser.find_element(By.LINK_TEXT, job_id[:12]).click()
    wait_for(browser, lambda d: "/61" in text_of(d, "batch-progress"), "the batch job page")
    seen = {text_of(browser, "batch-progress")}
    wait_for(browser, lambda d: seen.add(text_of(d, "batch-progress")) or len(seen - {""}) >= 3,
             "the batch progress to move")
    wait_for(browser, lambda d: text_of(d, "batch-progress") == "61/61", "the batch job to finish")
    wait_for(browser, lambda d: "SUCCESS" in d.find_element(By.CSS_SELECTOR, "#view h1").text, "the finished status")
    assert text_of(browser, "batch-failed") == "1"
    check_rendered(browser, "batch-job", ["Progress", "Latest items", "61/61"])


def test_dashboard_admin_key_sees_every_owner(browser: Any, server: RunningServer, bob_key: str,
                                              alice_key: str, sync_toolbox: Any) -> None:
    from selenium.webdriver.common.by import By

    admin = server.key(unique("ops"), admin=True)
    name = sync_toolbox.model_endpoint.name
    browser.get(f"{server.url}/dashboard")
    if browser.find_element(By.ID, "logout").is_displayed():
        browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "api-key").is_displayed(), "the login form")
    browser.find_element(By.ID, "api-key").send_keys(bob_key)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: text_of(d, "who") == "bob", "bob's overview")
    wait_for(browser, lambda d: "Endpoints" in d.find_element(By.ID, "view").text, "bob's endpoints")
    assert name not in browser.find_element(By.ID, "view").text  # alice's endpoint is not bob's to see
    browser.find_element(By.ID, "logout").click()
    browser.find_element(By.ID, "api-key").send_keys(admin)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: "admin" in text_of(d, "who"), "the operator view")
    wait_for(browser, lambda d: name in text_of(d, "endpoints-table"), "alice's endpoint in the operator view")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-endpoint="{name}"]').text
    assert "alice" in row
