"""The owner's analytics page (`GET /analytics`) in a real headless browser: Debian's chromium
driven by playwright (never playwright's own browsers), the admin router served by uvicorn on
loopback over a store with the scripted history (tests/integration/analytics_history.py)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from tests.integration.analytics_history import NOW, PNID, RANGE, T0, write_history
from tests.integration.test_analytics import AUTH, TOKEN, analytics_app
from tests.support.loop_server import serve_in_loop
from whatsray.store import Store

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "analytics-page.png"
CARDS = ("conversations", "inbound", "outbound", "turns", "dead_letters", "windows_unanswered")


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    clock = [T0]
    async with Store(tmp_path / "whatsray.duckdb", now=lambda: clock[0]) as store:
        await write_history(store, clock)
        async with serve_in_loop(analytics_app(store)) as base:
            yield base


def test_chromium_is_installed() -> None:
    assert Path(CHROMIUM).exists(), "apt-get install chromium (scripts/test installs it)"


async def test_the_page_draws_the_api_numbers_in_chromium(url: str, tmp_path: Path) -> None:
    query = {"from": "2025-06-16", "to": "2025-06-19", "phone_number_id": PNID}
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
        summary = (await http.get("/api/analytics/summary", params=query)).json()
    assert (summary["from"], summary["to"]) == RANGE and RANGE[1] < NOW
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            login = await page.goto(f"{url}/analytics")
            assert login is not None and login.status == 401
            await page.fill("#token", "not-the-token")
            await page.click("#login")
            assert "not the admin token" in await page.content()
            await page.fill("#token", TOKEN)
            await page.click("#login")
            await page.wait_for_selector("body[data-ready='true']")
            # The range of the scripted history, picked in the form.
            await page.fill("#from", query["from"])
            await page.fill("#to", query["to"])
            await page.fill("#number", PNID)
            await page.click("button[type='submit']")
            await page.wait_for_function(
                "document.body.dataset.ready === 'true' && document.querySelector("
                "'[data-metric=conversations]').dataset.value === '4'"
            )
            for name in CARDS:
                shown = await page.get_attribute(f"[data-metric={name}]", "data-value")
                assert shown == str(summary[name]), name
            rate = await page.text_content("[data-metric=containment_rate]")
            assert rate == "66.7 %"
            # Every chart has its lines, one point per day with data.
            for chart in ("messages", "conversations", "rates", "first_reply"):
                paths = page.locator(f"#chart-{chart} svg path[data-series]")
                assert await paths.count() == 2, chart
            inbound = page.locator("#chart-messages path[data-series=inbound]")
            assert await inbound.get_attribute("data-points") == "3"
            shot = tmp_path / "analytics-page.png"
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await browser.close()
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, DOCS_SCREENSHOT)
