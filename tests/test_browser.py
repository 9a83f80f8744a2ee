"""The Dagster UI in a real browser: Debian's chromium driven by Playwright against
`dagster-webserver`, on an instance where the demo batch was processed and one batch was refused.

Screenshots land in tests/artifacts/browser/ (gitignored); `scripts/screenshots.py` reuses the
helpers below for the README's images. Needs /usr/bin/chromium (`.ci/run` installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import dagster_webserver

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEMO_BATCH = "demo-farm-2026-06-14"
REFUSED_BATCH = "bad-checksum-2026-06-15"
UI_TIMEOUT_MS = 60_000  # the first page waits for the code location to load

# Runs in a fresh interpreter: run_demo sets process-wide environment variables.
_PROCESS = """
import json, sys, tempfile
from pathlib import Path
import dagster as dg
from pipeline.definitions import defs
from pipeline.demo import run_demo, upload_folder
from pipeline.sample import write_sample_batch
from resources.object_store import ObjectStoreResource

data_dir, demo_batch, refused_batch = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {"demo": run_demo(data_dir=data_dir, batch_id=demo_batch)}
if refused_batch:
    object_store = ObjectStoreResource.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_batch(Path(tmp) / refused_batch, batch_id=refused_batch, size=64)
        manifest = json.loads((sample.folder / "manifest.json").read_text())
        manifest["images"][0]["sha256"] = "0" * 64
        (sample.folder / "manifest.json").write_text(json.dumps(manifest))
        upload_folder(object_store.store(), object_store.imagery_bucket, refused_batch,
                      sample.folder, sample.files)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("imagery_batches", [refused_batch])
        run = defs().resolve_job_def("process_imagery_batch").execute_in_process(
            instance=instance, partition_key=refused_batch, raise_on_error=False)
    out["refused"] = {"run_id": run.run_id, "success": run.success}
print("RESULT " + json.dumps(out))
"""


def _environment(root: Path) -> dict[str, str]:
    """The embedded default (SQLite instance, local store) in `root`, whatever the caller's env."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MINIO_", "DAGSTER_PG_", "DASK_")) and k != "DAGSTER_HOME"}
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(DAGSTER_HOME=str(home), IMAGERY_DATA_DIR=str(root / "data"),
               IMAGERY_SENSOR_INTERVAL_S="3600")
    return env


def process_batches(root: Path, *, demo_batch: str = DEMO_BATCH,
                    refused_batch: str | None = REFUSED_BATCH) -> dict:
    """Run the demo flow (sensor + job) into `root`, and optionally a batch that is refused."""
    proc = subprocess.run([sys.executable, "-c", _PROCESS, str(root / "data"), demo_batch,
                           refused_batch or ""], cwd=REPO, env=_environment(root),
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"processing the batches failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


@contextlib.contextmanager
def chromium_page(*, width: int = 1400, height: int = 900):
    """A headless chromium page (Debian's binary) that dismisses Dagster's first-visit pop-up."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(UI_TIMEOUT_MS)
            # The "Join the Dagster community" dialog may open on any page, at any time.
            page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True),
                                     lambda skip: skip.click())
            yield page
        finally:
            browser.close()


def open_ui(page, url: str, *, wait_for: str) -> None:
    """Go to `url` and wait for a text (the UI keeps polling: network idle never comes)."""
    page.goto(url)
    page.get_by_text(wait_for, exact=True).first.wait_for()


def expand_asset_graph(page) -> None:
    """Expand every asset group in the lineage graph (the UI's shortcut ⌥E)."""
    page.keyboard.down("Alt")
    page.keyboard.press("KeyE")
    page.keyboard.up("Alt")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# ------------------------------------------------------------------------------------------ tests

pytestmark = pytest.mark.slow


def test_definitions__every_asset_and_check_is_described_owned_and_grouped(monkeypatch, tmp_path):
    """What the UI's asset pages show: description, owners and group; checks with descriptions."""
    monkeypatch.setenv("IMAGERY_DATA_DIR", str(tmp_path))
    from pipeline.definitions import defs

    graph = defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"imagery_batch", "index_statistics", "batch_report", "report_distribution"} <= keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and node.owners and node.group_name, key
    assert len(graph.asset_check_keys) >= 6
    for check in graph.asset_check_keys:
        assert graph.get_check_spec(check).description, check


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[dict]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium: apt-get install -y chromium (.ci/run does it)")
    root = tmp_path_factory.mktemp("ui")
    processed = process_batches(root)
    assert processed["demo"]["success"], processed
    assert not processed["refused"]["success"], processed
    with dagster_webserver(env=_environment(root), workdir=root, timeout_s=120) as url:
        yield {"url": url, **processed}


@pytest.fixture(scope="module")
def page(ui):
    with chromium_page() as page:
        yield page


GROUPS = {
    "intake": ("imagery_batch",),
    "analysis": ("index_rasters", "index_heatmaps", "index_statistics", "thermal_raster",
                 "thermal_heatmap", "thermal_statistics", "management_zone_statistics"),
    "site": ("change_rasters", "change_heatmaps", "site_history"),
    "report": ("batch_report", "report_distribution"),
}


def test_ui__asset_graph_shows_every_asset_in_its_group(ui, page):
    open_ui(page, f"{ui['url']}/asset-groups", wait_for="Global asset lineage")
    for group in GROUPS:
        page.get_by_text(group, exact=True).first.wait_for()
    expand_asset_graph(page)
    page.wait_for_timeout(1000)  # the expanded layout settles
    assert screenshot(page, "asset_graph").stat().st_size > 10_000
    # The whole graph no longer fits a readable viewport (the graph draws labels only for nodes
    # large enough to read), so the asset catalogue, which lists every asset, names them.
    page.goto(f"{ui['url']}/assets")
    page.get_by_text("imagery_batch", exact=True).filter(visible=True).first.wait_for()
    screenshot(page, "asset_catalogue")
    for names in GROUPS.values():
        for asset in names:  # (each name also sits in a hidden element the UI measures text with)
            page.get_by_text(asset, exact=True).filter(visible=True).first.wait_for()


def test_ui__processed_partition_shows_the_plotted_statistics(ui, page):
    open_ui(page, f"{ui['url']}/assets/index_statistics?view=partitions&partition={DEMO_BATCH}",
            wait_for="ndvi_mean")
    body = page.inner_text("body")
    assert DEMO_BATCH in body
    for key in ("ndvi_p50", "ndvi_valid_fraction", "ndvi_class_healthy_fraction"):
        assert key in body, key
    screenshot(page, "index_statistics_partition")


def test_ui__report_asset_describes_and_links_its_objects(ui, page):
    open_ui(page, f"{ui['url']}/assets/batch_report", wait_for="ndvi_mean")
    page.get_by_text("report_distribution", exact=True).first.wait_for()  # the lineage panel
    page.get_by_text("two renderings of one report model").first.wait_for()  # rendered late
    body = page.inner_text("body")
    assert "two renderings of one report model" in body  # the description
    assert f"reports/{DEMO_BATCH}/report.pdf" in body  # the published object
    assert "imagery" in body and "report" in body  # owner team and group
    screenshot(page, "batch_report")


def test_ui__heatmap_preview_renders_as_an_image(ui, page):
    open_ui(page, f"{ui['url']}/assets/index_heatmaps", wait_for="preview")
    page.get_by_text("Show Markdown").first.click()
    image = page.locator("img[src^='data:image/jpeg;base64,']").first
    image.wait_for()
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert 0 < width <= 256 and 0 < height <= 256  # decoded by the browser: a real thumbnail
    assert page.locator("img[src^='data:image/jpeg;base64,']").count() == 7  # one per index (ndwi too)
    page.wait_for_timeout(500)  # the dialog fades in
    screenshot(page, "index_heatmaps_preview")
    page.keyboard.press("Escape")


def test_ui__asset_checks_appear_on_the_asset_page(ui, page):
    open_ui(page, f"{ui['url']}/assets/index_statistics?view=checks",
            wait_for="index_values_in_range")
    body = page.inner_text("body")
    assert "index_valid_fraction" in body
    assert "blocking asset check" in body
    screenshot(page, "index_statistics_checks")


def test_ui__refused_batch_shows_the_reason_in_its_run(ui, page):
    open_ui(page, f"{ui['url']}/runs/{ui['refused']['run_id']}", wait_for="Failure")
    reason = page.get_by_text(f"Batch {REFUSED_BATCH} refused:").first
    reason.wait_for()
    assert "sha256" in reason.inner_text() and "upload the file again" in reason.inner_text()
    screenshot(page, "refused_run")
