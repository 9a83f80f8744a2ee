"""The PDF report: text, embedded maps, pagination, determinism, and how pages look when rasterised."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from pypdf import PdfReader

from pipeline.core.report_charts import round_length
from pipeline.core.report_pdf import THERMAL_TITLE, render_report, section_title
from pipeline.core.registry import INDICES
from pipeline.core.summary import Histogram, IndexInfo, ReportContext, Summary
from tests.core.test_summary import make_summary

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _heatmap_png(path: Path, *, ramp: str, vmin: float, vmax: float, shape: tuple[int, int]) -> Path:
    """A west-to-east gradient with a NaN hole, coloured like the heatmap previews (alpha 0 = no data)."""
    from matplotlib import colormaps

    h, w = shape
    values = np.tile(np.linspace(vmin, vmax, w), (h, 1))
    values[h // 3: h // 2, w // 3: w // 2] = np.nan
    rgba = (colormaps[ramp]((values - vmin) / (vmax - vmin)) * 255).astype(np.uint8)
    rgba[np.isnan(values), 3] = 0
    PILImage.fromarray(rgba, "RGBA").save(path)
    return path


def _context(tmp_path: Path, summary: Summary) -> ReportContext:
    maps = {name: _heatmap_png(tmp_path / f"{name}.png", ramp=s.scale.ramp, vmin=s.scale.vmin, vmax=s.scale.vmax,
                               shape=(150, 200))
            for name, s in summary.indices.items()}
    maps["thermal"] = _heatmap_png(tmp_path / "thermal.png", ramp="inferno", vmin=10, vmax=45, shape=(60, 80))
    rng = np.random.default_rng(0)
    histograms = {}
    for name, s in summary.indices.items():
        counts, edges = np.histogram(rng.normal(s.mean, s.std, 5000), bins=40, range=(s.scale.vmin, s.scale.vmax))
        histograms[name] = Histogram(edges=edges.tolist(), counts=counts.tolist())
    counts, edges = np.histogram(rng.normal(24, 4, 5000), bins=35, range=(10, 45))
    histograms["thermal"] = Histogram(edges=edges.tolist(), counts=counts.tolist())
    return ReportContext(captured_at="2026-06-14T10:32:00Z", platform="DJI M300", sensor="MicaSense RedEdge-P",
                         maps=maps, histograms=histograms, thermal_scale={"ramp": "inferno", "vmin": 10, "vmax": 45},
                         index_info={name: IndexInfo(long_name=INDICES[name].long_name, formula=INDICES[name].formula,
                                                     description=INDICES[name].description)
                                     for name in summary.indices})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Summary, ReportContext, bytes]:
    summary = make_summary(n_zones=5)
    context = _context(tmp_path_factory.mktemp("maps"), summary)
    return summary, context, render_report(summary=summary, context=context)


def _texts(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def test_render_report__text_has_batch_sections_and_zones(rendered) -> None:
    summary, _, pdf = rendered
    texts = _texts(pdf)
    text = "\n".join(texts)
    assert summary.batch_id in texts[0]
    context = rendered[1]
    for name in summary.indices:
        assert section_title(name, context) in text
        assert context.index_info[name].long_name in section_title(name, context)
    assert THERMAL_TITLE in text
    for zone in summary.zones:
        assert zone.name in text
    assert "page 1 of" in texts[0] and f"page {len(texts)} of {len(texts)}" in texts[-1]
    assert "MicaSense RedEdge-P" in texts[0] and "0.0285 ha" in texts[0]  # 0.95 × 300 m² covered
    assert "grid north" in text and "32.0 °C" in text  # north arrow label, hotspot threshold


def test_render_report__embeds_map_images(rendered) -> None:
    summary, _, pdf = rendered
    images = 0
    for page in PdfReader(io.BytesIO(pdf)).pages:
        xobjects = page["/Resources"].get("/XObject", {})
        images += sum(1 for x in xobjects.values() if x.get_object()["/Subtype"] == "/Image")
    assert images == len(summary.indices) + 1  # one map per index + thermal


def test_render_report__byte_identical(rendered) -> None:
    summary, context, pdf = rendered
    assert render_report(summary=summary, context=context) == pdf
    assert b"D:20260614110000+00'00'" in pdf  # creation date is generated_at, not now


def test_render_report__zone_table_splits_with_repeated_header(rendered, tmp_path: Path) -> None:
    few_summary, context, few = rendered
    many_summary = make_summary(n_zones=80)
    many = render_report(summary=many_summary, context=context)
    few_pages, many_pages = _texts(few), _texts(many)
    assert len(many_pages) > len(few_pages)
    ndvi_rows = [i for i, t in enumerate(many_pages) if "Zones — NDVI" in t]
    continuation = ndvi_rows[0] + 1
    assert "Field 80" not in many_pages[ndvi_rows[0]]
    assert "Field 80" in "".join(many_pages[continuation: continuation + 2])
    # the heading stays with its table, and the continuation page repeats the table's header row
    for page in (ndvi_rows[0], continuation):
        lines = [line.strip() for line in many_pages[page].split("\n")]
        first_row = next(i for i, line in enumerate(lines) if line.startswith("Field "))
        assert lines[first_row - 6: first_row] == ["zone", "area (ha)", "mean", "p10", "p50", "p90"], page
    for zone in many_summary.zones:
        assert zone.name in "\n".join(many_pages)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
def test_render_report__pages_not_blank_when_rasterised(rendered, tmp_path: Path) -> None:
    _, _, pdf = rendered
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    ARTIFACTS.mkdir(exist_ok=True)
    for page in (1, 2):  # cover and the NDVI page
        prefix = ARTIFACTS / f"report_page{page}"
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-singlefile", "-f", str(page), "-l", str(page),
                        str(source), str(prefix)], check=True)
        pixels = np.asarray(PILImage.open(f"{prefix}.png").convert("L"), dtype=np.float32)
        non_white = float((pixels < 240).mean())
        assert pixels.std() > 10
        assert non_white > (0.02 if page == 1 else 0.15), f"page {page}: only {non_white:.1%} inked"


def test_round_length__picks_1_2_5() -> None:
    assert [round_length(x) for x in (0.3, 4.9, 7.5, 20.0, 1234.0)] == [0.2, 2.0, 5.0, 20.0, 1000.0]


def test_render_report__management_zone_page_in_acres_with_totals(rendered, tmp_path: Path) -> None:
    summary, context, _ = rendered
    classes = PILImage.new("RGBA", (120, 90), (0, 0, 0, 0))
    classes.paste((215, 48, 39, 255), (0, 0, 40, 90))
    classes.paste((26, 152, 80, 255), (40, 0, 120, 90))
    classes.save(tmp_path / "mz.png")
    parts = [{"zone_class": 1, "field": "Field 01", "area_m2": 40.0, "ndvi_mean": 0.2,
              "rate": 140.0},
             {"zone_class": 3, "field": None, "area_m2": 4046.8564224, "ndvi_mean": 0.8,
              "rate": 80.0}]
    acres = context.model_copy(update={
        "area_unit": "acre", "maps": {**context.maps, "management_zones": tmp_path / "mz.png"},
        "zone_parts": [dict(p) for p in parts],
        "zone_colours": [(215, 48, 39), (254, 224, 139), (26, 152, 80)]})
    acres = ReportContext.model_validate(acres.model_dump())
    text = "\n".join(_texts(render_report(summary=summary, context=acres)))
    page = text[text.index("Management zones and prescription", text.index("Sections") + 200):]
    assert "area (acre)" in page and "area (ha)" not in page
    assert "Urea 46 in kg/ha" in page and "class 1 (lowest vigour)" in page
    assert "mean NDVI" in page  # the zoning index (VARI for an RGB-only batch)
    # class 1: 140 kg/ha over 0.95 × 0.3 × 300 m² = 85.5 m² → 1.2 kg; 85.5 m² = 0.0211 acre
    assert "1.2 kg" in page and "0.0211" in page
    # the field outside every field: one acre at 80 kg/ha = 32.4 kg
    assert "outside every field" in page and "32.4 kg" in page
    assert "Canopy cover per field" in page and "25.0 %" in page


def test_render_report__every_area_in_the_configured_unit(rendered) -> None:
    summary, context, _ = rendered
    acres = ReportContext.model_validate({**context.model_dump(), "area_unit": "acre"})
    text = "\n".join(_texts(render_report(summary=summary, context=acres)))
    assert "(ha)" not in text and " ha " not in text
    assert "area (acre)" in text and "valid area (acre)" in text
    assert "0.0704 acre with data" in text  # 285 m² = 0.0704 acre


def test_render_report__since_page_with_change_map_fields_and_series(tmp_path: Path) -> None:
    import json

    document = json.loads(make_summary(n_zones=2).to_json())
    zone = document["zones"][0]["name"]
    change = {"mean": -0.15, "p10": -0.2, "p50": -0.15, "p90": -0.1, "gain_area_m2": 0.0,
              "loss_area_m2": 1500.0}
    document["site"] = {"site_id": "farm7-north", "previous_batch_id": "june04",
                        "previous_captured_at": "2026-06-04T10:00:00Z", "comparable": True,
                        "reasons": [], "shift_px": [0.1, -0.2]}
    document["change"] = {"ndvi": change}
    document["zones"][0]["change"] = {"ndvi": change}
    summary = Summary.model_validate(document)
    context = ReportContext.model_validate({**_context(tmp_path, summary).model_dump(),
        "maps": {**_context(tmp_path, summary).maps,
                 "change_ndvi": _heatmap_png(tmp_path / "change.png", ramp="RdBu", vmin=-0.5,
                                             vmax=0.5, shape=(150, 200))},
        "previous_zone_means": {zone: 0.7123},
        "site_series": {"": [("2026-06-04T10:00:00Z", 0.7), ("2026-06-14T10:32:00Z", 0.55)],
                        zone: [("2026-06-04T10:00:00Z", 0.7123), ("2026-06-14T10:32:00Z", 0.56)]}})
    text = _texts(render_report(summary=summary, context=context))[-1]
    assert "Since 04 June 2026" in text and "june04" in text
    assert "0.712" in text and "-0.150" in text and "0.1500" in text  # then, Δ, loss (ha)
    assert "NDVI mean by field" in text and "whole grid" in text
    # not comparable: the reasons instead of a map
    document["site"] |= {"comparable": False, "reasons": ["the previous batch june04 has no "
                                                          "explicit reflectance_scale"]}
    document["change"] = {}
    document["zones"][0].pop("change")
    text = _texts(render_report(summary=Summary.model_validate(document), context=context))[-1]
    assert "Not comparable" in text and "explicit reflectance_scale" in text
