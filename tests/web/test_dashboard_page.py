"""The operations dashboard (/dashboard) in a real Chromium over a real hub (issue 16 item 1):
live counts from the ops socket, the last 24 hours from GET /v1/stats, the charts drawn."""

from __future__ import annotations

import json
import time
import uuid

from tests.conftest import RunningHub
from tests.web import test_pages as pages
from tests.web.test_pages import DESKTOP, PHONE, Chromium, screenshot, send_fix, socket_state
from tests.web.test_pages import technician_socket as technician

browser = pages.browser
web_hub = pages.web_hub


async def test_the_dashboard_shows_the_fleet_now_and_the_days_figures(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    async with hub.client() as http:
        city = {"name": "North", "timezone": "Europe/Berlin"}
        assert (await http.put("/v1/cities/north", json=city)).status_code == 200
    # Two technicians online; one on a visit, en route. A visit checked in by hand, on time.
    await hub.create_booking(id="b-route", technician_id="t-1", city="north")
    assert (await hub.post("/v1/bookings/b-route/en_route")).status_code == 200
    now = time.time()
    window = {"start_t": now - 600, "end_t": now + 3600}
    await hub.create_booking(id="b-done", technician_id="t-3", city="north", window=window)
    for step in ("en_route", "arrive", "start", "complete"):
        assert (await hub.post(f"/v1/bookings/b-done/{step}")).status_code == 200
    first = await technician(hub, "t-1")
    second = await technician(hub, "t-2")
    await send_fix(first, 1, time.time() - 2, 52.51, 13.39)
    await send_fix(second, 1, time.time() - 2, 52.52, 13.40)
    # An SOS, unacknowledged: an open incident in the tiles.
    await second.send(json.dumps({"type": "sos", "id": str(uuid.uuid4()), "t": time.time()}))

    operator = await hub.token("operator", "op-1")
    page = await browser.page(f"{hub.http}/dashboard?token={operator}", DESKTOP)
    await socket_state(page, "open")
    await page.wait_for_function("() => document.getElementById('t-incidents').textContent === '1'")
    assert await page.text_content("#t-online") == "2"
    assert await page.text_content("#t-en-route") == "1"
    assert await page.text_content("#t-on-site") == "0"
    # The day's figures, from GET /v1/stats.
    await page.wait_for_function("() => window.doorstep.latest() !== null")
    assert await page.text_content("#s-bookings") == "2"
    assert await page.text_content("#s-on-time") == "100 % of 1"
    assert await page.text_content("#s-auto") == "0 % of 1"  # checked in by hand
    assert "within 15 s" in await page.text_content("#s-ack-target")
    statuses = await page.locator("#by-status li").all_text_contents()
    assert sorted(statuses) == ["completed 1", "en route 1"]
    assert await page.locator("#breakdown tr[data-where='city:north']").count() == 1
    # The city filter asks for that city only.
    options = await page.locator("#city option").all_text_contents()
    assert "North" in options
    # Both charts are drawn (uPlot canvases), fed with at least one sample.
    assert await page.locator("#chart-fleet canvas").count() >= 1
    assert await page.locator("#chart-incidents canvas").count() >= 1
    await page.evaluate("() => window.doorstep.sample()")
    await screenshot(page, "dashboard-desktop")
    await page.set_viewport_size(PHONE)
    await screenshot(page, "dashboard-phone")


async def test_the_dashboard_without_a_token_says_so(web_hub: RunningHub, browser: Chromium):
    page = await browser.page(f"{web_hub.http}/dashboard", DESKTOP)
    await page.wait_for_function("() => document.getElementById('conn').textContent === 'no token'")
