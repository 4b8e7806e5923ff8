"""The console's fleet in Chromium (issue 16 item 3): labelled, status-coloured markers and a
list beside the map that is searched as one types, follows the live ``fleet`` messages
without losing the search or the scroll position, and centres the map on a clicked row.

Same browser, hub and rules as ``test_pages.py`` (nothing leaves 127.0.0.1, no page errors);
the screenshot lands in test-artifacts/web/.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import RunningHub
from tests.web import test_pages as pages
from tests.web.test_pages import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    Chromium,
    screenshot,
    send_fix,
    socket_state,
    technician_socket,
)

browser = pages.browser
web_hub = pages.web_hub

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

# Three named or not, spread over Berlin, and enough unnamed ones that the list scrolls.
ADA = (52.500, 13.380)
GRACE = (52.530, 13.420)
LONE = (52.510, 13.450)
CROWD = [f"x-{n:02d}" for n in range(1, 15)]

VISIBLE_ROWS = """() => [...document.querySelectorAll('#fleet-list li')]
    .filter(li => !li.hidden).map(li => li.querySelector('.name').textContent)"""
# Leaflet fades a popup in: wait for the end of it before a screenshot.
POPUP_SHOWN = "() => getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'"
LABELS = """() => [...document.querySelectorAll('.leaflet-tooltip.fleet-label')]
    .map(n => n.textContent).sort()"""


async def put_name(hub: RunningHub, technician_id: str, name: str) -> None:
    async with hub.client() as http:
        response = await http.put(f"/v1/technicians/{technician_id}", json={"name": name})
    assert response.status_code == 200, response.text


async def online_at(hub: RunningHub, technician_id: str, at: tuple[float, float]) -> Any:
    tech = await technician_socket(hub, technician_id)
    await send_fix(tech, 1, time.time() - 2, *at)
    return tech


async def test_console_labels_lists_filters_and_centres_on_a_technician(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    await put_name(hub, "t-1", "Ada Lovelace")
    await put_name(hub, "t-2", "Grace Hopper")
    techs = {
        "t-1": await online_at(hub, "t-1", ADA),
        "t-2": await online_at(hub, "t-2", GRACE),
        "t-3": await online_at(hub, "t-3", LONE),
    }
    for n, technician_id in enumerate(CROWD):
        techs[technician_id] = await online_at(hub, technician_id, (52.45 - n * 0.002, 13.30))
    await hub.create_booking(id="b-1", technician_id="t-2")
    assert (await hub.post("/v1/bookings/b-1/en_route")).status_code == 200
    operator = await hub.token("operator", "op-1")

    page = await browser.page(f"{hub.http}/console?token={operator}", DESKTOP)
    await socket_state(page, "open")
    await page.wait_for_function("() => document.querySelectorAll('.fleet-label').length === 17")

    # Every dot is labelled "name · status" (the id when there is no name), and coloured.
    labels = await page.evaluate(LABELS)
    assert labels[:3] == ["Ada Lovelace · idle", "Grace Hopper · en route", "t-3 · idle"]
    assert labels[3:] == [f"{t} · idle" for t in CROWD]
    assert await page.locator(".dot-marker.fleet-en_route").count() == 1
    assert await page.locator(".dot-marker.fleet-idle").count() == 16

    # The list: by name, then the unnamed by id; each row with its status and position age.
    rows = await page.evaluate(VISIBLE_ROWS)
    assert rows == ["Ada Lovelace", "Grace Hopper", "t-3", *CROWD]
    grace_row = page.locator(".fleet-row[data-id='t-2']")
    assert await grace_row.locator(".fleet-status").text_content() == "en route"
    assert await grace_row.locator(".id").text_content() == "t-2"
    assert (await grace_row.locator(".age").text_content()).endswith(" s")
    assert await page.text_content("#fleet-count") == "17"
    await screenshot(page, "console-fleet-labels-desktop")

    # Live updates keep the scroll position and the very same row nodes.
    scrolled = await page.evaluate(
        """() => { const list = document.getElementById('fleet-list');
        list.scrollTop = list.scrollHeight; window.markedRow = list.lastElementChild;
        return list.scrollTop; }"""
    )
    assert scrolled > 0, "fourteen extra rows must make the list scroll"
    await send_fix(techs["x-14"], 2, time.time(), 52.40, 13.31)
    assert (await hub.post("/v1/bookings/b-1/arrive")).status_code == 200
    await page.wait_for_function(
        "() => document.querySelector(\".fleet-row[data-id='t-2'] .fleet-status\")"
        ".textContent === 'arrived'"
    )
    await page.wait_for_function("() => window.doorstep.fleet.get('x-14').entry.lat === 52.40")
    kept = await page.evaluate(
        """() => { const list = document.getElementById('fleet-list');
        return [list.scrollTop, list.lastElementChild === window.markedRow]; }"""
    )
    assert kept == [scrolled, True]
    assert "Grace Hopper · arrived" in await page.evaluate(LABELS)

    # Typing filters as one types, by name or id, case-insensitively.
    search = page.locator("#fleet-search")
    await search.press_sequentially("GRA")
    assert await page.evaluate(VISIBLE_ROWS) == ["Grace Hopper"]
    assert await page.text_content("#fleet-count") == "1 of 17"
    await search.fill("")
    await search.press_sequentially("t-")
    assert await page.evaluate(VISIBLE_ROWS) == ["Ada Lovelace", "Grace Hopper", "t-3"]
    await search.fill("nobody")
    assert await page.evaluate(VISIBLE_ROWS) == []
    assert await page.locator("#fleet-empty").is_visible()
    await search.fill("")
    await search.press_sequentially("grace")

    # A live update does not undo the search.
    await send_fix(techs["t-1"], 2, time.time(), 52.501, 13.381)
    await page.wait_for_function("() => window.doorstep.fleet.get('t-1').entry.lat === 52.501")
    assert await search.input_value() == "grace"
    assert await page.evaluate(VISIBLE_ROWS) == ["Grace Hopper"]

    # Clicking the row centres the map on Grace and opens her popup.
    await grace_row.click()
    popup = page.locator(".leaflet-popup")
    await popup.wait_for()
    assert "Grace Hopper" in await popup.text_content()
    assert "arrived" in await popup.text_content()
    centre = await page.evaluate(
        "() => { const c = window.doorstep.map.getCenter(); return [c.lat, c.lng]; }"
    )
    assert centre == pytest.approx(GRACE, abs=1e-6)
    assert await page.evaluate("() => window.doorstep.map.getZoom()") >= 15
    assert await grace_row.get_attribute("aria-current") == "true"
    await page.wait_for_function(POPUP_SHOWN)
    await screenshot(page, "console-fleet-desktop")

    # The socket closes: the label and the row say offline, in grey.
    await techs["t-2"].close()
    await page.wait_for_function(
        "() => document.querySelector(\".fleet-row[data-id='t-2'] .fleet-status\")"
        ".textContent === 'offline'"
    )
    assert "Grace Hopper · offline" in await page.evaluate(LABELS)
    assert await page.locator(".dot-marker.fleet-offline").count() == 1


async def test_names_are_text_never_markup(web_hub: RunningHub, browser: Chromium):
    hub = web_hub
    await put_name(hub, "t-1", "<img src=x onerror=alert(1)>")
    tech = await online_at(hub, "t-1", ADA)
    operator = await hub.token("operator", "op-1")
    page = await browser.page(f"{hub.http}/console?token={operator}", PHONE)
    await page.wait_for_function("() => document.querySelectorAll('.fleet-label').length === 1")
    assert await page.evaluate(LABELS) == ["<img src=x onerror=alert(1)> · idle"]
    assert await page.locator("#map img[src='x'], #fleet-list img").count() == 0
    # On a phone the list is below the map, the queue and the detail: still there, clickable.
    await page.locator(".fleet-row[data-id='t-1']").click()
    await page.locator(".leaflet-popup").wait_for()
    # ...and the click brings the map, centred on them, back into view.
    map_top = "() => document.getElementById('map').getBoundingClientRect().top"
    assert await page.evaluate(map_top) >= 0
    await page.wait_for_function(POPUP_SHOWN)
    await screenshot(page, "console-fleet-phone")
    await tech.close()
