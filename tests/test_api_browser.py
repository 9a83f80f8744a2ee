"""The map viewer in a real browser: Debian's chromium driven by Playwright against
`pipeline.api` served by uvicorn on loopback, over a copy of the processed demo batch whose
summary names a previous flight of its site (so the swipe has two flights to show).

Sign in, the map loads tiles, switching layers changes the legend, clicking a field shows its
statistics, the swipe shows both flights, no request leaves loopback, no console error.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
import uvicorn

from tests.api_world import TOKEN, make_app
from tests.servers import free_port
from tests.test_browser import ARTIFACTS, CHROMIUM, chromium_page

pytestmark = pytest.mark.slow
PREVIOUS = "demo-farm-2026-05-30"


def _with_previous_flight(world, root: Path) -> Path:
    """A copy of the world's store where the demo batch's site has an earlier flight (NDVI 0.3
    lower), as the sites helper records it in summary.json `site`."""
    data = root / "data"
    shutil.copytree(world.data_dir, data)
    for bucket in ("analysis-heatmaps", "reports"):
        shutil.copytree(data / bucket / world.demo, data / bucket / PREVIOUS)
    ndvi = data / "analysis-heatmaps" / PREVIOUS / "ndvi.tif"
    with rasterio.open(ndvi) as src:
        values, profile = src.read(1) - np.float32(0.3), src.profile
    profile.update(driver="COG", compress="deflate", blocksize=512)
    for key in ("blockxsize", "blockysize", "tiled", "interleave", "predictor"):
        profile.pop(key, None)
    with rasterio.open(ndvi, "w", **profile) as dst:
        dst.write(values, 1)
    summary_path = data / "reports" / world.demo / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["site"] = {"site_id": "demo-farm", "previous_batch_id": PREVIOUS,
                       "previous_captured_at": "2026-05-30T10:00:00Z", "comparable": True,
                       "reasons": [], "shift_px": [0.0, 0.0]}
    summary_path.write_text(json.dumps(summary))
    return data


@pytest.fixture(scope="module")
def served(processed, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium: apt-get install -y chromium (.ci/run does it)")
    from pipeline.storage import LocalObjectStore

    data = _with_previous_flight(processed, tmp_path_factory.mktemp("api_browser"))
    app = make_app(LocalObjectStore(root=data))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.1)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "data": data, "world": processed}
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _wait(page, js: str, arg=None, *, timeout_s: float = 60.0) -> None:
    """Poll `js` (a function) until it is truthy. Playwright's own waiting evaluates a string,
    which the page's Content-Security-Policy (no 'unsafe-eval') forbids, as it should."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {js}"
        time.sleep(0.2)


TILE_LOADED = """(part) => Array.from(document.querySelectorAll('img.leaflet-tile'))
    .some(i => i.complete && i.naturalWidth === 256 && i.src.includes(part))"""


def _pixels(page, *points: tuple[float, float]) -> list[np.ndarray]:
    """RGB of the page at each (x, y) CSS pixel, from a screenshot (device scale 1)."""
    from io import BytesIO

    from PIL import Image

    time.sleep(0.5)  # let the clip and tiles paint
    shot = np.asarray(Image.open(BytesIO(page.screenshot())).convert("RGB")).astype(int)
    return [shot[int(y), int(x)] for x, y in points]


def _loaded_tiles(page, batch_id: str) -> int:
    return page.evaluate("""(id) => Array.from(document.querySelectorAll('img.leaflet-tile'))
        .filter(img => img.complete && img.naturalWidth === 256
                && img.src.includes('/tiles/' + id + '/'))
        .length""", batch_id)


def test_viewer__sign_in_layers_legend_fields_and_swipe(served):
    base, world = served["url"], served["world"]
    summary = json.loads((served["data"] / "reports" / world.demo / "summary.json").read_text())
    requests, errors = [], []
    with chromium_page() as page:
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(f"{base}/map/{world.demo}")
        assert urlsplit(page.url).path == "/login"
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/map/{world.demo}")

        _wait(page, "() => document.querySelectorAll('#layers input').length > 0")
        _wait(page, TILE_LOADED, "/ndvi/")
        assert _loaded_tiles(page, world.demo) > 0
        legend = page.locator("#legend")
        assert legend.get_attribute("data-layer") == "ndvi"
        assert "NDVI" in legend.inner_text() and "RdYlGn" in legend.inner_text()
        ndvi_bar = page.locator("#legend .bar").evaluate("e => e.style.background")

        page.get_by_label("Thermal").check()
        _wait(page, "() => document.querySelector('#legend').dataset.layer === 'thermal'")
        assert "Thermal" in legend.inner_text() and "inferno" in legend.inner_text()
        assert page.locator("#legend .bar").evaluate("e => e.style.background") != ndvi_bar
        _wait(page, TILE_LOADED, "/thermal/")

        # Click inside each field outline: its statistics, area in ha.
        names = {z["name"] for z in summary["zones"]}
        fields = page.locator("path.leaflet-interactive")
        assert fields.count() == len(names)
        shown = set()
        for i in range(fields.count()):
            fields.nth(i).click(force=True)
            title = page.locator("#field h2").inner_text()
            zone = next(z for z in summary["zones"] if z["name"] == title)
            text = page.locator("#field").inner_text()
            assert f"{zone['area_m2'] / 1e4:.2f} ha" in text
            assert f"{zone['indices']['ndvi']['mean']:.3f}" in text
            shown.add(title)
        assert shown == names

        # Swipe: the previous flight's tiles appear in their own pane, clipped by the slider.
        page.get_by_label("NDVI", exact=True).check()
        page.check("#swipe")
        _wait(page, TILE_LOADED, f"/{PREVIOUS}/ndvi/")
        clip = page.locator(".leaflet-previous-pane .leaflet-layer").evaluate("e => e.style.clip")
        assert clip.startswith("rect(")
        # Split the first field in two: left of the slider the earlier flight (NDVI 0.3 lower,
        # so another colour), right of it this one.
        box = fields.first.bounding_box()
        map_box = page.locator("#map").bounding_box()
        split = box["x"] + box["width"] / 2
        page.locator("#swipe-range").fill(str(round((split - map_box["x"]) / map_box["width"]
                                                    * 100)))
        assert page.locator(".leaflet-previous-pane .leaflet-layer").evaluate(
            "e => e.style.clip") != clip
        y = box["y"] + box["height"] * 0.15
        left, right = (box["x"] + box["width"] * 0.25, y), (box["x"] + box["width"] * 0.75, y)
        both = _pixels(page, left, right)
        assert np.abs(both[0] - both[1]).sum() > 60, both  # two flights side by side
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "api-viewer.png"))
        page.uncheck("#swipe")
        one = _pixels(page, left, right)
        assert np.abs(one[0] - one[1]).sum() < 30, one  # this flight only: one colour
        assert np.abs(one[1] - both[1]).sum() < 30

    hosts = {urlsplit(u).hostname for u in requests if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts
    assert errors == [], errors


def test_viewer__a_session_ending_while_the_page_loads_goes_to_sign_in(served):
    """/map/…/data.json without a session redirects to /login (DESIGN.md §6); the page follows."""
    base, world = served["url"], served["world"]
    with chromium_page() as page:
        page.goto(f"{base}/login?next=/map/{world.demo}")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/map/{world.demo}")

        def without_session(route):  # the session ends between the page and its data
            headers = {k: v for k, v in route.request.all_headers().items()
                       if k.lower() != "cookie"}
            page.context.clear_cookies()
            route.continue_(headers=headers)

        page.route("**/data.json", without_session)
        page.reload()
        page.wait_for_url(f"{base}/login?next=%2Fmap%2F{world.demo}")
        assert page.locator("#token").count() == 1
