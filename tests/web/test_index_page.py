"""The index page at ``/`` (issue 16 item 3): what this hub is, links to its three pages
(with the token each needs), to the health endpoints and to the docs. Served over HTTP like
the other pages, read and clicked in Chromium; screenshots land in test-artifacts/web/.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from realtime.pages import render
from tests.conftest import PLATFORM_KEY, SECRET, RunningHub
from tests.web import test_pages as pages
from tests.web.test_pages import CHROMIUM, DESKTOP, PHONE, Chromium, screenshot

# The browser and the hub of the page tests, as fixtures of this module too.
browser = pages.browser
web_hub = pages.web_hub

# Every link of the page, in page order: the three pages, health, then the machine-readable
# API documents (the prose docs are named, not linked: the hub does not serve docs/).
LINKS = [
    "/console",
    "/dashboard",
    "/track",
    "/tech",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/asyncapi.json",
]


class _Parsed(HTMLParser):
    """The links, the tags, the text and the body's ``data-config`` of a page (attribute
    values unescaped by the parser, as a browser would)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.config: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "a":
            self.links.append(values["href"] or "")
        if tag == "body":
            self.config = json.loads(values["data-config"] or "null")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Parsed:
    parsed = _Parsed()
    parsed.feed(page)
    return parsed


async def test_the_root_url_serves_the_index_page_with_its_links(hub: RunningHub) -> None:
    async with hub.client(None) as http:
        response = await http.get("/")
        head = await http.head("/")
    assert response.status_code == 200
    assert head.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page = parse(response.text)
    assert page.links == LINKS
    text = " ".join(" ".join(page.text).split())
    assert "tracking and safety hub" in text
    assert "Wire protocol v1" in text
    assert "docs/protocol.md" in text
    # The token each page needs, spelled out (the parser has unescaped &lt; and &amp;).
    assert "/console?token=<operator token>" in text
    assert "/track?booking=<booking id>&token=<customer token for that booking>" in text
    assert "/tech?token=<technician token>" in text
    # Nothing secret: not the signing key, not the platform key.
    assert SECRET not in response.text and PLATFORM_KEY not in response.text
    # Nothing runs on it: no script, no inline style (the CSP would refuse both anyway).
    assert "script" not in page.tags and "style" not in page.tags


def test_the_index_escapes_what_the_settings_put_into_it() -> None:
    hostile = '"><script>alert(1)</script>'
    settings = SimpleNamespace(
        tile_url="https://tiles.example/{z}/{x}/{y}.png" + hostile, tile_attribution=hostile
    )
    page = render("index", settings)
    assert "<script>" not in page
    parsed = parse(page)
    assert "script" not in parsed.tags
    # ...and the values survive, for a page that reads them.
    assert parsed.config == {
        "protocol": 1,
        "tile_url": "https://tiles.example/{z}/{x}/{y}.png" + hostile,
        "tile_attribution": hostile,
    }
    assert "{{" not in page  # every placeholder filled


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
async def test_the_index_page_in_a_browser_links_to_the_pages_and_its_links_work(
    web_hub: RunningHub, browser: Chromium
) -> None:
    hub = web_hub
    page = await browser.page(f"{hub.http}/", DESKTOP)
    assert await page.title() == "Doorstep · Tracking and safety hub"
    hrefs = await page.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == LINKS
    assert await page.locator("#protocol-version").text_content() == "v1"
    await screenshot(page, "index-desktop")

    # The console without a token says so (and how to open it) instead of failing.
    await page.click("#link-console")
    await page.wait_for_url(f"{hub.http}/console")
    await page.wait_for_function("() => document.getElementById('conn').textContent === 'no token'")
    await page.go_back()
    await page.wait_for_url(f"{hub.http}/")

    await page.click("#link-healthz")
    await page.wait_for_url(f"{hub.http}/healthz")
    assert json.loads(await page.locator("body").inner_text()) == {"status": "ok"}

    phone = await browser.page(f"{hub.http}/", PHONE)
    assert await phone.locator("#link-tech").is_visible()
    await screenshot(phone, "index-phone")
