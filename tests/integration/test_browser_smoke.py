"""The console's front-end plumbing in a real browser: the vendored htmx, its SSE extension and
Leaflet, served by aiohttp, in Debian's chromium with Chinese fonts.

No console yet: a one-page app that uses each vendored file the way the console will
(an htmx swap, a server-sent event, a GeoJSON area on a map with no tile layer, since the
console's maps must work without a tile server on the internet). If a refresh of the vendor
folder, a chromium upgrade or a missing font breaks any of that, this test says so first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Page, Request, Response, expect

from tests.integration.browser import screenshot, serving

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "connectors" / "console" / "static"
VERSIONS = REPO / "ops" / "console-assets" / "versions.txt"

TITLE = "余杭区社会治理中心"
EVENT = "新上报：余杭街道 文一西路路灯不亮"

PAGE = f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{TITLE}</title>
<link rel="stylesheet" href="/static/vendor/leaflet/leaflet.css">
<script src="/static/vendor/htmx/htmx.min.js"></script>
<script src="/static/vendor/htmx-ext-sse/sse.js"></script>
<script src="/static/vendor/leaflet/leaflet.js"></script>
<style>
  body {{ font-family: "Noto Sans CJK SC", sans-serif; margin: 24px; }}
  #map {{ width: 720px; height: 420px; border: 1px solid #888; background: #f4f1ea; }}
</style>
</head>
<body>
<h1>{TITLE}</h1>
<p>工单状态：<span id="status">待派遣</span>
  <button id="dispatch" hx-get="/clicked" hx-target="#status">派遣至城管</button></p>
<p>推送：<span id="feed" hx-ext="sse" sse-connect="/events" sse-swap="message">等待中</span></p>
<div id="map"></div>
<script>
  const area = {{type: "Feature", properties: {{name: "余杭街道"}}, geometry: {{
    type: "Polygon",
    coordinates: [[[119.93, 30.26], [120.00, 30.25], [120.03, 30.30], [119.97, 30.33],
                   [119.93, 30.26]]]}}}};
  const map = L.map("map", {{attributionControl: false}});
  const layer = L.geoJSON(area, {{style: {{color: "#c0392b", weight: 2}}}}).addTo(map);
  map.fitBounds(layer.getBounds());
</script>
</body>
</html>
"""


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def _clicked(request: web.Request) -> web.Response:
    return web.Response(text="已派遣", content_type="text/html")


async def _events(request: web.Request) -> web.StreamResponse:
    """One event, then the end of the stream; ``retry`` keeps the browser from reconnecting
    during the test, so the handler never outlives it."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(f"retry: 60000\nevent: message\ndata: {EVENT}\n\n".encode())
    await response.write_eof()
    return response


@pytest.fixture
def site() -> Iterator[str]:
    """The one-page app on a free port; yields the root URL."""
    app = web.Application()
    app.add_routes([web.get("/", _index), web.get("/clicked", _clicked),
                    web.get("/events", _events), web.static("/static", STATIC)])
    with serving(app) as url:
        yield url


def _pinned(name: str) -> str:
    for line in VERSIONS.read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec.rpartition("@")[0] == name:
            return spec.rpartition("@")[2]
    raise AssertionError(f"{name} is not pinned in {VERSIONS}")


def test_vendored_htmx_and_leaflet_work_in_chromium(site: str, page: Page) -> None:
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: failed.append(_describe(request)))
    page.on("response", lambda response: failed.extend(_bad(response)))
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(site + "/")
    expect(page.locator("h1")).to_have_text(TITLE)

    # The files served are the pinned ones (a pin moved without running refresh.sh shows here).
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.evaluate("typeof window.L") == "object"
    assert page.evaluate("window.htmx.version") == _pinned("htmx.org")
    assert page.evaluate("window.L.version") == _pinned("leaflet")

    # htmx: the button's GET swaps the answer in.
    page.click("#dispatch")
    expect(page.locator("#status")).to_have_text("已派遣")

    # The SSE extension: the server's one event is swapped in.
    expect(page.locator("#feed")).to_have_text(EVENT)

    # Leaflet: the polygon is drawn as one SVG path with a shape, and no tile was asked for.
    area = page.locator("path.leaflet-interactive")
    expect(area).to_have_count(1)
    assert (area.get_attribute("d") or "").startswith("M")
    assert page.locator(".leaflet-tile").count() == 0

    # The Chinese heading is drawn with Debian's Noto CJK font, not as boxes (chromium tells
    # which platform fonts drew a node's glyphs).
    assert _fonts_of(page, "h1") == {"Noto Sans CJK SC"}

    shot = screenshot(page, "browser-smoke")
    assert shot.stat().st_size > 10_000

    assert errors == []
    assert failed == []
    assert all(url.startswith(site + "/") for url in requests), requests


def _describe(request: Request) -> str:
    return f"{request.method} {request.url}: {request.failure}"


def _bad(response: Response) -> list[str]:
    return [f"{response.status} {response.url}"] if response.status >= 400 else []


def _fonts_of(shown: Page, selector: str) -> set[str]:
    """The platform fonts chromium drew the text of ``selector`` with (DevTools protocol)."""
    cdp = shown.context.new_cdp_session(shown)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    finally:
        cdp.detach()
    return {font["familyName"] for font in fonts}
