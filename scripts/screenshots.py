"""Regenerate the README's screenshots (docs/images/): the Dagster UI and a report page.

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--report-page 2]

Processes the demo batch into a temporary embedded instance, serves it with dagster-webserver on
a free loopback port, photographs the expanded asset graph in Debian's chromium (Playwright),
and renders one page of the demo report with pdftoppm. Images are palette PNGs, ≤ 300 kB each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_browser import (  # noqa: E402 - the repository root is put on the path above
    DEMO_BATCH,
    chromium_page,
    expand_asset_graph,
    open_ui,
    process_batches,
    webserver,
)

MAX_BYTES = 300_000


def _small_png(src: Path, dst: Path, *, max_width: int) -> Path:
    """Shrink to `max_width` and quantize to 256 colours: UI and report pages stay crisp."""
    from PIL import Image

    with Image.open(src) as image:
        image = image.convert("RGB")
        if image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)),
                                 Image.Resampling.LANCZOS)
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
    size = dst.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{dst} is {size / 1e3:.0f} kB, more than {MAX_BYTES / 1e3:.0f} kB")
    return dst


def ui_screenshot(url: str, dst: Path, workdir: Path) -> Path:
    raw = workdir / "ui.png"
    with chromium_page(width=1280, height=760) as page:
        open_ui(page, f"{url}/asset-groups", wait_for="Global asset lineage")
        page.get_by_text("report", exact=True).first.wait_for()
        expand_asset_graph(page)
        page.get_by_text("batch_report", exact=True).last.wait_for()
        page.wait_for_timeout(1500)  # the graph animates into place
        page.screenshot(path=str(raw))
    return _small_png(raw, dst, max_width=1280)


def report_screenshot(pdf: Path, dst: Path, workdir: Path, *, page: int) -> Path:
    prefix = workdir / "report"
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", str(page), "-l", str(page),
                    "-singlefile", str(pdf), str(prefix)], check=True)
    return _small_png(prefix.with_suffix(".png"), dst, max_width=720)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--report-page", type=int, default=2, help="2: the NDVI page")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        root = Path(tmp)
        result = process_batches(root, refused_batch=None)
        if not result["demo"]["success"]:
            raise SystemExit(f"the demo run failed: {result}")
        # The first-visit dialog is not part of the picture: mark it seen, as Dagster's Skip does.
        nux = root / "dagster_home" / ".nux"
        nux.mkdir(parents=True, exist_ok=True)
        (nux / "nux.yaml").write_text("seen: 1\n")
        pdf = root / "data" / "reports" / DEMO_BATCH / "report.pdf"
        written = [report_screenshot(pdf, args.out / "report_page.png", root,
                                     page=args.report_page)]
        with webserver(root) as url:
            written.append(ui_screenshot(url, args.out / "ui_asset_graph.png", root))
    for path in written:
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
