"""The pages' assets: Leaflet vendored from the npm lock, pages served with their config."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path

from realtime.pages import STATIC_DIR
from tests.conftest import RunningHub

ROOT = Path(__file__).resolve().parents[2]
VENDOR = STATIC_DIR / "vendor" / "leaflet"


def locked_leaflet() -> dict:
    return json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/leaflet"]


def test_package_json_pins_the_exact_leaflet_version_of_the_lock():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["leaflet"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"leaflet must be pinned exactly, not {pinned!r}"
    assert pinned == locked_leaflet()["version"]


def test_vendored_leaflet_is_the_locked_version_unmodified():
    lock = locked_leaflet()
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())
    hint = "run scripts/vendor_leaflet.sh"
    assert manifest["version"] == lock["version"], hint
    assert manifest["integrity"] == lock["integrity"], hint
    assert f"Leaflet {lock['version']}," in (VENDOR / "leaflet.js").read_text()[:200]
    on_disk = {
        p.relative_to(VENDOR).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in VENDOR.rglob("*")
        if p.is_file() and p.name != "MANIFEST.json"
    }
    assert on_disk == manifest["files"], f"vendored files differ from the manifest: {hint}"
    assert {"leaflet.js", "leaflet.css", "images/marker-icon.png"} <= set(on_disk)


UPLOT = STATIC_DIR / "vendor" / "uplot"


def test_vendored_uplot_is_the_pinned_locked_version_unmodified():
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/uplot"]
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned) and pinned == lock["version"]
    manifest = json.loads((UPLOT / "MANIFEST.json").read_text())
    hint = "run scripts/vendor_leaflet.sh"
    assert (manifest["package"], manifest["version"]) == ("uplot", lock["version"]), hint
    assert manifest["integrity"] == lock["integrity"], hint
    on_disk = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in UPLOT.iterdir()
        if p.is_file() and p.name != "MANIFEST.json"
    }
    assert on_disk == manifest["files"], f"vendored files differ from the manifest: {hint}"
    assert {"uPlot.esm.js", "uPlot.min.css", "LICENSE"} == set(on_disk)


def test_vendored_leaflet_equals_node_modules_when_installed():
    installed = ROOT / "node_modules" / "leaflet"
    if not (installed / "package.json").exists():
        return  # npm ci was not run here; the manifest test above still holds
    version = json.loads((installed / "package.json").read_text())["version"]
    if version != locked_leaflet()["version"]:
        return  # node_modules is stale, not the vendored copy
    for name in ("leaflet.js", "leaflet.css"):
        assert (VENDOR / name).read_bytes() == (installed / "dist" / name).read_bytes()


async def test_pages_are_served_with_the_tile_settings_and_no_cache(hub_factory):
    hub: RunningHub = await hub_factory(
        tile_url="https://tiles.example/{z}/{x}/{y}.png",
        tile_attribution='© "Example" <a href="https://example.org">maps</a>',
    )
    async with hub.client(None) as http:
        for page in ("track", "console", "tech"):
            response = await http.get(f"/{page}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["referrer-policy"] == "strict-origin"
            assert "script-src 'self'" in response.headers["content-security-policy"]
            config_attr = re.search(r'data-config="([^"]*)"', response.text)
            assert config_attr, "the config is one well-quoted attribute"
            config = json.loads(html.unescape(config_attr.group(1)))
            assert config["tile_url"] == "https://tiles.example/{z}/{x}/{y}.png"
            assert (
                config["tile_attribution"] == '© "Example" <a href="https://example.org">maps</a>'
            )
            assert "/static/vendor/leaflet/leaflet.js" in response.text
            assert f"/static/{page}.js" in response.text


async def test_static_files_and_leaflet_are_served(hub: RunningHub):
    async with hub.client(None) as http:
        script = await http.get("/static/vendor/leaflet/leaflet.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await http.get("/static/vendor/leaflet/leaflet.css")).status_code == 200
        icon = await http.get("/static/vendor/leaflet/images/marker-icon.png")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
        for name in ("common.js", "track.js", "console.js", "tech.js", "doorstep.css"):
            assert (await http.get(f"/static/{name}")).status_code == 200, name
        assert (await http.get("/static/nope.js")).status_code == 404
        assert (await http.get("/static/../pages.py")).status_code == 404
