"""The pages' tokens in a real browser (issue 11, items 4 and 5): the token leaves the
address bar as soon as the page has read it (kept in memory and sessionStorage, so a reload
still works), and a page refreshes its token through ``POST /v1/tokens/refresh`` before it
expires, reconnecting with the new one when the hub closes the socket 4401 "token expired".
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import RunningHub, hand_made_token
from tests.web import test_pages as pages
from tests.web.test_pages import CHROMIUM, Chromium, en_route_booking, socket_state

# The browser and the hub of the page tests, as fixtures of this module too.
browser = pages.browser
web_hub = pages.web_hub

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@pytest.mark.parametrize("page_name", ["track", "console", "tech"])
async def test_the_address_bar_no_longer_shows_the_token_after_load(
    web_hub: RunningHub, browser: Chromium, page_name: str
):
    hub = web_hub
    if page_name == "track":
        token = await en_route_booking(hub, "b-bar", "t-bar")
        query = f"booking=b-bar&token={token}"
    elif page_name == "console":
        token = await hub.token("operator", "op-bar")
        query = f"token={token}"
    else:
        token = await hub.token("technician", "t-bar")
        query = f"token={token}"
    context = await browser.context(geolocation={"latitude": 52.5, "longitude": 13.4})
    await context.grant_permissions(["geolocation"])
    page = await browser.open(context, f"{hub.http}/{page_name}?{query}")
    await socket_state(page, "open")
    assert token not in page.url and "token=" not in page.url, page.url
    if page_name == "track":
        assert "booking=b-bar" in page.url  # the rest of the address is kept
    assert await page.evaluate("() => window.doorstep.pageToken.value") == token
    # A reload (the address no longer has it) finds it in this tab's sessionStorage.
    await page.reload()
    await socket_state(page, "open")
    assert token not in page.url
    assert await page.evaluate("() => window.doorstep.pageToken.value") == token


@pytest.mark.parametrize("page_name", ["console", "track"])
async def test_a_page_refreshes_its_token_and_reconnects_when_the_old_one_expires(
    web_hub: RunningHub, browser: Chromium, page_name: str
):
    hub = web_hub
    now = time.time()
    if page_name == "console":
        identity = {"role": "operator", "sub": "op-refresh"}
        path = "/console?token="
    else:
        await en_route_booking(hub, "b-refresh", "t-refresh")
        identity = {"role": "customer", "sub": "cust-1", "booking": "b-refresh"}
        path = "/track?booking=b-refresh&token="
    # Lives 4 s: the page refreshes it about 1 s before the end.
    short = hand_made_token({**identity, "iat": int(now), "exp": int(now) + 4})
    page = await browser.page(hub.http + path + short)
    await socket_state(page, "open")
    await page.wait_for_function(
        "old => window.doorstep.pageToken.value !== old", arg=short, timeout=8000
    )
    fresh = await page.evaluate("() => window.doorstep.pageToken.value")
    # The hub closed the old socket at exp; the page reconnected with the fresh token.
    await page.wait_for_function(
        "() => { const c = window.doorstep.socket.lastClose;"
        " return c && c.code === 4401 && c.reason === 'token expired'; }",
        timeout=8000,
    )
    await socket_state(page, "open")
    assert await page.evaluate("() => window.doorstep.pageToken.value") == fresh
    async with hub.client(fresh) as http:
        # The fresh token is a real one of the same identity, with the default lifetime.
        response = await http.post("/v1/tokens/refresh")
    assert response.status_code == 201
    assert response.json()["sub"] == identity["sub"]
    assert (
        await page.evaluate("key => sessionStorage.getItem(key)", storage_key(page_name)) == fresh
    )


def storage_key(page_name: str) -> str:
    return {
        "console": "doorstep.console.token",
        "track": "doorstep.track.b-refresh.token",
        "tech": "doorstep.tech.token",
    }[page_name]
