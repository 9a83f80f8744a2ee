"""Time the report's rendering (issue 17): the demo batch (4 fields) and a 50-field batch.

The analysis runs first (not timed) on the sample batch at `--size` px; then, per batch, the
report model is built (`build_summary`, `build_context`, which projects the field outlines onto
both grids) and `render_report` renders the PDF, `--repeat` times; the best and median seconds are
printed, with the PDF's size and page count. The 50-field batch is the same imagery with the
grid cut into 10 × 5 fields (their zones file in EPSG:32633).

    PYTHONPATH=. .venv/bin/python -m bench.report_render --size 1024 --repeat 5
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.analysis import analyse_indices, analyse_thermal
from pipeline.core.manifest import parse_manifest
from pipeline.core.mgmt_analysis import analyse_management_zones
from pipeline.core.outputs import preview_name
from pipeline.core.report_build import build_context, build_summary, print_map
from pipeline.core.report_pdf import render_report
from pipeline.core.validation import validate_images
from pipeline.core.zone_outputs import class_map_png
from pipeline.sample import ORIGIN, PIXEL, write_sample_batch


def fifty_fields(size: int) -> bytes:
    """The grid cut into 10 × 5 rectangular fields (a 1-pixel gap between), EPSG:32633."""
    x0, y0 = ORIGIN
    w, h = size * PIXEL / 10, size * PIXEL / 5
    features = []
    for i in range(50):
        c, r = i % 10, i // 10
        left, top = x0 + c * w + PIXEL, y0 - r * h - PIXEL
        right, bottom = left + w - 2 * PIXEL, top - h + 2 * PIXEL
        ring = [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
        features.append({"type": "Feature", "properties": {"name": f"Parcel {i + 1:02d}"},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return json.dumps({"type": "FeatureCollection", "features": features,
                       "crs": {"type": "name", "properties": {"name": "EPSG:32633"}}}).encode()


def one_batch(label: str, *, batch, zones: bytes, workdir: Path, repeat: int) -> dict:
    workdir.mkdir(parents=True)
    indices = analyse_indices(sources=batch.optical_sources, reflectance_scale=0.0001,
                              workdir=workdir, zones_geojson=zones)
    thermal = analyse_thermal(sources=batch.thermal_sources, unit="centikelvin", scale=None,
                              offset=None, workdir=workdir, zones_geojson=zones)
    zoning = analyse_management_zones(
        index_path=str(workdir / "ndvi.tif"), index="ndvi", classes=3, min_ha=0.05,
        canopy_ndvi=0.5, workdir=workdir / "mz", task=batch.batch_id, software_version="bench",
        zones_geojson=zones)
    maps = {}
    for name in [*sorted(indices.indices), "thermal"]:
        maps[name] = print_map(workdir / preview_name(name), workdir / f"{name}_map.jpg")
    png = class_map_png(workdir / "mz" / "management_zones.tif", workdir / "mz.png",
                        classes=zoning.classes)
    maps["management_zones"] = print_map(png, workdir / "mz_map.jpg")
    model_s, render_s = [], []
    pdf = b""
    for _ in range(repeat):
        started = time.perf_counter()
        summary = build_summary(batch=batch, indices=indices, thermal=thermal, artifacts={},
                                generated_at=datetime(2026, 6, 14, 12, tzinfo=UTC),
                                code_version="bench", zoning=zoning)
        context = build_context(batch=batch, indices=indices, thermal=thermal, maps=maps,
                                zoning=zoning, zones_geojson=zones)
        built = time.perf_counter()
        pdf = render_report(summary=summary, context=context)
        model_s.append(built - started)
        render_s.append(time.perf_counter() - built)
    from pypdf import PdfReader

    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    (workdir.parent / f"{label}.pdf").write_bytes(pdf)
    return {"batch": label, "fields": len(summary.zones), "pages": pages,
            "pdf_kB": round(len(pdf) / 1e3), "model_s_median": round(statistics.median(model_s), 3),
            "render_s_best": round(min(render_s), 3),
            "render_s_median": round(statistics.median(render_s), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the PDFs into this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        root = args.keep or Path(tmp)
        sample = write_sample_batch(root / "in", size=args.size)
        manifest = parse_manifest((sample.folder / "manifest.json").read_bytes(),
                                  name="manifest.json", batch_id=sample.batch_id)
        batch = validate_images(manifest=manifest, locate=lambda p: str(sample.folder / p),
                                gdal_options={})
        demo_zones = (sample.folder / "fields.geojson").read_bytes()
        rows = [one_batch("demo", batch=batch, zones=demo_zones, workdir=root / "demo",
                          repeat=args.repeat),
                one_batch("fifty", batch=batch, zones=fifty_fields(args.size),
                          workdir=root / "fifty", repeat=args.repeat)]
    print("| batch | fields | pages | PDF kB | model s | render s (best) | render s (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['batch']} | {r['fields']} | {r['pages']} | {r['pdf_kB']} | "
              f"{r['model_s_median']} | {r['render_s_best']} | {r['render_s_median']} |")


if __name__ == "__main__":
    main()
