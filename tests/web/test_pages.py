"""The three web pages in a real headless browser (Debian's chromium, driven by Playwright)
against a real hub: customer tracking (/track), operator console (/console), technician app
(/tech).

Nothing leaves 127.0.0.1: the tile server is a closed local port (the pages must work on a
blank map), and any request to another host fails the test. Screenshots of each page land in
test-artifacts/web/.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Route, async_playwright

from tests.conftest import RunningHub, ShiftedClock, receive_until

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium "
    "(apt-get install chromium; .ci/run installs it)",
)
# Headless and quiet: no GPU, no sandbox (containers run as root), no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 820}
HOME = (52.52, 13.405)  # the default booking destination of RunningHub.create_booking

MARKER_LATLNG = "() => { const p = window.doorstep.techMarker.getLatLng(); return [p.lat, p.lng]; }"


# Expressions for wait_for_function are written as functions: a bare expression string is
# eval()ed in the page, which the pages' Content-Security-Policy (no 'unsafe-eval') refuses.


def closed_port() -> int:
    """A local port nobody listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Chromium:
    """One browser for one test; every page's uncaught errors and off-host requests."""

    browser: Browser
    errors: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)

    async def context(self, viewport: dict[str, int] = PHONE, **options: Any) -> BrowserContext:
        context = await self.browser.new_context(viewport=viewport, **options)
        context.set_default_timeout(10_000)

        async def only_local(route: Route, request: Request) -> None:
            if urlsplit(request.url).hostname != "127.0.0.1":
                self.offsite.append(request.url)
                await route.abort()
            else:
                await route.continue_()

        await context.route("**/*", only_local)
        return context

    async def open(self, context: BrowserContext, url: str) -> Page:
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{url}: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"{url}: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        await page.goto(url)
        return page

    async def page(self, url: str, viewport: dict[str, int] = PHONE, **options: Any) -> Page:
        return await self.open(await self.context(viewport, **options), url)


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        chromium = Chromium(launched)
        try:
            yield chromium
        finally:
            await launched.close()
    assert not chromium.errors, f"errors in the pages: {chromium.errors}"
    assert not chromium.offsite, f"the pages asked other hosts: {chromium.offsite}"


@pytest.fixture
async def web_hub(hub_factory: Callable[..., Awaitable[RunningHub]]) -> RunningHub:
    return await hub_factory(tile_url=f"http://127.0.0.1:{closed_port()}/{{z}}/{{x}}/{{y}}.png")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    """The first truthy result of ``check``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {result!r})")
        await asyncio.sleep(0.05)


async def socket_state(page: Page, state: str, timeout: float = 10_000) -> None:
    await page.wait_for_function(
        "state => window.doorstep && window.doorstep.socket.state === state",
        arg=state,
        timeout=timeout,
    )


async def get(hub: RunningHub, token: str, path: str) -> Any:
    async with hub.client(token) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def technician_socket(hub: RunningHub, technician_id: str) -> Any:
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
    await receive_until(tech, "ack")
    return tech


async def send_fix(tech: Any, seq: int, t: float, lat: float, lon: float) -> None:
    fix = {"type": "location", "seq": seq, "t": t, "lat": lat, "lon": lon, "acc": 8}
    await tech.send(json.dumps(fix))


async def en_route_booking(hub: RunningHub, booking_id: str, technician_id: str) -> str:
    """A booking on its way; returns its customer's token."""
    await hub.create_booking(id=booking_id, technician_id=technician_id)
    assert (await hub.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200
    return await hub.token("customer", "cust-1", booking=booking_id)


# ------------------------------------------------------------------ customer: /track


async def test_customer_marker_glides_to_each_fix_and_the_eta_follows(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    customer = await en_route_booking(hub, "b-1", "t-1")
    tech = await technician_socket(hub, "t-1")
    page = await browser.page(f"{hub.http}/track?booking=b-1&token={customer}")
    await socket_state(page, "open")
    assert await page.text_content("#status") == "On the way"

    now = time.time()
    first, second = (52.49, 13.37), (52.50, 13.38)
    await send_fix(tech, 1, now - 60, *first)
    await page.wait_for_function(
        f"() => ({MARKER_LATLNG})()[0] === {first[0]} && "
        "document.getElementById('eta').textContent.endsWith('min')"
    )
    eta_before = await page.text_content("#eta")

    await send_fix(tech, 2, now - 30, *second)
    samples = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        samples.append(await page.evaluate(MARKER_LATLNG))
        if samples[-1] == list(second):
            break
        await asyncio.sleep(0.02)
    assert samples[-1] == list(second), f"the marker did not reach the new fix: {samples[-5:]}"
    gliding = [s for s in samples if first[0] < s[0] < second[0] and first[1] < s[1] < second[1]]
    assert len(gliding) >= 3, f"the marker jumped instead of gliding: {samples}"

    await send_fix(tech, 3, now, 52.505, 13.39)
    await page.wait_for_function(
        "before => document.getElementById('eta').textContent !== before", arg=eta_before
    )
    assert (await page.text_content("#eta")).endswith("min")
    assert "about" in await page.text_content("#eta-band")
    await page.wait_for_timeout(1100)  # let the last glide end before the picture
    await screenshot(page, "track-phone")

    desktop = await browser.page(f"{hub.http}/track?booking=b-1&token={customer}", DESKTOP)
    await socket_state(desktop, "open")
    await desktop.wait_for_function(f"() => ({MARKER_LATLNG})()[0] === 52.505")
    await screenshot(desktop, "track-desktop")


async def test_customer_page_shows_reconnecting_then_stops_when_the_visit_is_over(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    customer = await en_route_booking(hub, "b-1", "t-1")
    page = await browser.page(f"{hub.http}/track?booking=b-1&token={customer}")
    await socket_state(page, "open")

    await hub.stop()
    await socket_state(page, "reconnecting")
    assert await page.text_content("#conn") == "reconnecting…"
    await screenshot(page, "track-reconnecting")
    await hub.start()
    await socket_state(page, "open", timeout=15_000)
    assert await page.text_content("#conn") == "live"

    assert (await hub.post("/v1/bookings/b-1/cancel")).status_code == 200
    await socket_state(page, "closed")
    assert await page.text_content("#conn") == "Visit finished"
    assert await page.text_content("#status") == "This visit was cancelled"
    await page.wait_for_timeout(1500)  # close 1000: no reconnect attempts
    assert await page.evaluate("window.doorstep.socket.state") == "closed"
    await screenshot(page, "track-finished")


async def test_customer_sos_goes_over_the_socket_and_shows_the_acknowledgement(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    customer = await en_route_booking(hub, "b-1", "t-1")
    page = await browser.page(f"{hub.http}/track?booking=b-1&token={customer}")
    await socket_state(page, "open")

    await page.click("#sos")
    await page.wait_for_selector("#sos-state[data-phase='stored']")
    assert "alerted" in await page.text_content("#sos-state")
    operator = await hub.token("operator", "op-1")
    [incident] = (await get(hub, operator, "/v1/incidents"))["incidents"]
    assert incident["reporter"] == {"sub": "cust-1", "role": "customer"}
    assert incident["booking_id"] == "b-1"

    async with hub.client(operator) as http:
        await http.post(f"/v1/incidents/{incident['id']}/ack", json={})
    await page.wait_for_selector("#sos-state[data-status='acknowledged']")
    assert "operator is handling" in await page.text_content("#sos-state")


async def test_customer_sos_falls_back_to_http_when_the_socket_is_down(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    customer = await en_route_booking(hub, "b-1", "t-1")
    page = await browser.page(f"{hub.http}/track?booking=b-1&token={customer}")
    await socket_state(page, "open")
    await page.evaluate("window.doorstep.socket.stop()")

    await page.click("#sos")
    await page.wait_for_selector("#sos-state[data-phase='stored']")
    operator = await hub.token("operator", "op-1")
    [incident] = (await get(hub, operator, "/v1/incidents"))["incidents"]
    assert incident["reporter"]["role"] == "customer" and incident["booking_id"] == "b-1"
    sos_id = await page.evaluate("window.doorstep.sos.state.id")
    assert incident["client_id"] == sos_id


# ------------------------------------------------------------------ operator: /console


async def test_console_shows_a_new_sos_within_a_second_and_its_ack_reaches_the_hub(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    await hub.create_booking(id="b-1", technician_id="t-1")
    operator = await hub.token("operator", "op-1")
    tech = await technician_socket(hub, "t-1")
    await send_fix(tech, 1, time.time() - 5, 52.51, 13.39)
    page = await browser.page(f"{hub.http}/console?token={operator}", DESKTOP)
    await socket_state(page, "open")
    await page.wait_for_function("() => window.doorstep.fleet.has('t-1')")
    assert await page.locator("#alarm").is_hidden()

    sos = {"type": "sos", "id": str(uuid.uuid4()), "t": time.time(), "lat": 52.511, "lon": 13.39}
    started = time.monotonic()
    await tech.send(json.dumps(sos))
    await page.wait_for_selector(".incident[data-status='open']", timeout=1000)
    assert time.monotonic() - started < 1.0
    assert await page.locator("#alarm").is_visible()
    assert "technician t-1" in await page.text_content("#alarm")
    incident_id = await page.get_attribute(".incident", "data-id")
    assert await page.text_content("#detail-status") == "open"  # selected by itself

    # The live trail: every fix of the technician while the incident is open.
    for seq, lat in ((2, 52.512), (3, 52.513)):
        await send_fix(tech, seq, time.time(), lat, 13.391)
    await page.wait_for_function("() => window.doorstep.selectionLayer.trail.length >= 2")
    await screenshot(page, "console-sos-desktop")

    await page.fill("#note", "called the technician")
    await page.click("#ack-button")

    async def acknowledged() -> Any:
        incident = await get(hub, operator, f"/v1/incidents/{incident_id}")
        return incident if incident["status"] == "acknowledged" else None

    incident = await eventually(acknowledged)
    assert incident["audit"][-1]["note"] == "called the technician"
    assert incident["audit"][-1]["actor"] == "operator:op-1"
    await page.wait_for_selector("#detail-status:text('acknowledged')")
    assert await page.locator("#alarm").is_hidden()

    await page.select_option("#outcome", "false_alarm")
    await page.click("#resolve-button")

    async def resolved() -> Any:
        incident = await get(hub, operator, f"/v1/incidents/{incident_id}")
        return incident if incident["status"] == "resolved" else None

    assert (await eventually(resolved))["outcome"] == "false_alarm"
    await page.wait_for_selector("#queue-empty", state="visible")


async def test_console_resyncs_from_the_snapshot_after_a_reconnect(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    operator = await hub.token("operator", "op-1")
    tech_token = await hub.token("technician", "t-1")
    tech = await hub.connect("/v1/ws/technician", tech_token)
    await tech.send(json.dumps({"type": "sos", "id": "before", "t": time.time()}))
    await receive_until(tech, "sos_ack")
    page = await browser.page(f"{hub.http}/console?token={operator}", PHONE)
    await page.wait_for_selector(".incident[data-status='open']")

    await hub.stop()
    await socket_state(page, "reconnecting")
    await hub.start()
    # Raised while the console is away: only the snapshot can bring it.
    tech = await hub.connect("/v1/ws/technician", tech_token)
    await tech.send(json.dumps({"type": "sos", "id": "while-away", "t": time.time()}))
    await receive_until(tech, "sos_ack")

    await socket_state(page, "open", timeout=15_000)
    await page.wait_for_function("() => document.querySelectorAll('.incident').length === 2")
    assert await page.locator("#alarm").is_visible()
    await screenshot(page, "console-phone")


async def test_console_lists_safety_alerts_and_acks_them(hub_factory, browser: Chromium):
    hub = await hub_factory(
        tile_url=f"http://127.0.0.1:{closed_port()}/{{z}}/{{x}}/{{y}}.png",
        signal_lost_s=0.3,
        watchdog_interval_s=0.05,
    )
    operator = await hub.token("operator", "op-1")
    page = await browser.page(f"{hub.http}/console?token={operator}", DESKTOP)
    await socket_state(page, "open")
    tech = await technician_socket(hub, "t-1")
    await hub.create_booking(id="b-1", technician_id="t-1")
    for step in ("en_route", "arrive", "start"):
        assert (await hub.post(f"/v1/bookings/b-1/{step}")).status_code == 200
    await send_fix(tech, 1, time.time(), *HOME)

    item = page.locator(".alert-item[data-kind='signal_lost']")
    await item.wait_for()
    alert_id = await item.get_attribute("data-id")
    assert alert_id
    await item.locator("button").click()

    async def acknowledged() -> Any:
        alert = await get(hub, operator, f"/v1/alerts/{alert_id}")
        return alert if alert["status"] == "acknowledged" else None

    assert (await eventually(acknowledged))["acked_by"] == "operator:op-1"
    await page.wait_for_selector(".alert-item[data-status='acknowledged']")
    await screenshot(page, "console-alerts-desktop")


# --------------------------------------------------------------- technician: /tech


async def tech_page(hub: RunningHub, browser: Chromium, lat: float, lon: float) -> Page:
    token = await hub.token("technician", "t-1")
    context = await browser.context(
        PHONE,
        geolocation={"latitude": lat, "longitude": lon, "accuracy": 10},
        permissions=["geolocation"],
    )
    page = await browser.open(context, f"{hub.http}/tech?token={token}")
    await socket_state(page, "open")
    return page


async def stored_track(hub: RunningHub, operator: str) -> list[list[float]]:
    feature = await get(hub, operator, "/v1/technicians/t-1/track")
    geometry = feature["geometry"]
    if geometry is None:
        return []
    return [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]


async def test_technician_page_streams_its_geolocation_and_shows_the_booking(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    operator = await hub.token("operator", "op-1")
    await hub.create_booking(id="b-7", technician_id="t-1")
    page = await tech_page(hub, browser, 52.51, 13.39)
    await page.wait_for_selector("#booking:has-text('Booking b-7')")

    await eventually(lambda: stored_track(hub, operator))
    assert await stored_track(hub, operator) == [[13.39, 52.51]]
    await page.wait_for_selector("#queue-state[data-count='0']")

    await page.wait_for_timeout(1100)  # the page keeps at most one fix a second
    await page.context.set_geolocation({"latitude": 52.512, "longitude": 13.395, "accuracy": 10})

    async def two_fixes() -> Any:
        return len(await stored_track(hub, operator)) == 2

    await eventually(two_fixes)
    assert (await stored_track(hub, operator))[-1] == [13.395, 52.512]
    assert await page.evaluate("localStorage.getItem('doorstep.tech.t-1.seq')") == "2"
    await screenshot(page, "tech-phone")


async def test_technician_page_buffers_fixes_offline_and_flushes_them_on_reconnect(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    operator = await hub.token("operator", "op-1")
    page = await tech_page(hub, browser, 52.51, 13.39)
    await eventually(lambda: stored_track(hub, operator))

    await hub.stop()
    await socket_state(page, "reconnecting")
    await page.wait_for_timeout(1100)
    await page.context.set_geolocation({"latitude": 52.515, "longitude": 13.4, "accuracy": 10})
    await page.wait_for_selector("#queue-state[data-count='1']")
    # The queue survives a reload or a killed browser: it is in localStorage.
    stored = "() => JSON.parse(localStorage.getItem('doorstep.tech.t-1.queue') || '[]')"
    await page.wait_for_function(f"() => ({stored})().length === 1")
    queued = await page.evaluate(stored)
    assert [(p["lat"], p["lon"]) for p in queued] == [(52.515, 13.4)]

    await hub.start()
    await socket_state(page, "open", timeout=15_000)

    async def flushed() -> Any:
        return (await stored_track(hub, operator))[-1:] == [[13.4, 52.515]]

    await eventually(flushed, timeout=10)
    await page.wait_for_selector("#queue-state[data-count='0']")


async def test_technician_sos_needs_a_press_and_hold_and_shows_its_acknowledgement(
    web_hub: RunningHub, browser: Chromium
):
    hub = web_hub
    operator = await hub.token("operator", "op-1")
    page = await tech_page(hub, browser, 52.51, 13.39)
    await eventually(lambda: stored_track(hub, operator))
    box = await page.locator("#sos-hold").bounding_box()
    assert box
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    await page.mouse.down()  # a tap is not an SOS
    await page.wait_for_timeout(300)
    await page.mouse.up()
    await page.wait_for_timeout(500)
    assert (await get(hub, operator, "/v1/incidents"))["incidents"] == []
    assert await page.locator("#sos-state").is_hidden()

    await page.mouse.down()
    await page.wait_for_timeout(750)
    progress = await page.get_attribute("#sos-ring", "stroke-dashoffset")
    assert 0 < float(progress or 0) < 289, "the ring shows the hold's progress"
    await screenshot(page, "tech-sos-holding")
    await page.wait_for_timeout(1000)
    await page.mouse.up()

    await page.wait_for_selector("#sos-state[data-phase='stored']")
    [incident] = (await get(hub, operator, "/v1/incidents"))["incidents"]
    assert incident["reporter"] == {"sub": "t-1", "role": "technician"}
    assert incident["location"]["source"] == "sos"
    assert (incident["location"]["lat"], incident["location"]["lon"]) == (52.51, 13.39)
    assert "alerted" in await page.text_content("#sos-state")
    await screenshot(page, "tech-sos-acknowledged")


async def test_technician_page_answers_are_you_ok_for_an_overdue_visit(
    hub_factory, browser: Chromium
):
    clock = ShiftedClock()
    hub = await hub_factory(
        clock=clock,
        tile_url=f"http://127.0.0.1:{closed_port()}/{{z}}/{{x}}/{{y}}.png",
        watchdog_interval_s=0.05,
        overdue_margin_s=0,
        check_timeout_s=30,
    )
    await hub.create_booking(id="b-late", technician_id="t-1", expected_duration_s=60)
    for step in ("en_route", "arrive", "start"):
        assert (await hub.post(f"/v1/bookings/b-late/{step}")).status_code == 200
    page = await tech_page(hub, browser, *HOME)  # mints its token before the clock moves
    assert await page.locator("#check").is_hidden()

    clock.advance(61)  # past the expected 60 s
    await page.wait_for_selector("#check", state="visible")
    assert await page.text_content("#check-question") == "Are you OK?"
    await screenshot(page, "tech-are-you-ok")
    await page.click("#check-ok")
    await page.wait_for_selector("#check", state="hidden")  # hidden on the hub's check_ack
    assert await hub.hub.watchdog.open_checks("t-1") == []
    assert hub.hub.safety.open_incidents() == []
