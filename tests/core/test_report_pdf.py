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

from shapely.geometry import box

from pipeline.core.registry import INDICES
from pipeline.core.report_charts import round_length
from pipeline.core.report_maps import map_labels, outlines_on_grid
from pipeline.core.report_pdf import (
    FIELDS_TITLE,
    FRAME_W,
    MAP_MAX_H,
    THERMAL_TITLE,
    render_report,
    section_title,
)
from pipeline.core.summary import Histogram, IndexInfo, ReportContext, Summary
from tests.core.test_report_findings import known_context, known_summary
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


def _field_outlines(summary: Summary, *, cols: int = 10) -> list:
    """The summary's zones as a grid of rectangles over its grid extent (cols per row)."""
    x0, y0, x1, y1 = summary.grid.bounds
    n = len(summary.zones)
    rows = -(-n // cols)
    w, h = (x1 - x0) / min(cols, n), (y1 - y0) / rows
    fields = [(z.name, box(x0 + (i % cols) * w + 0.05 * w, y1 - (i // cols + 1) * h + 0.05 * h,
                           x0 + (i % cols + 1) * w - 0.05 * w, y1 - (i // cols) * h - 0.05 * h))
              for i, z in enumerate(summary.zones)]
    return outlines_on_grid(fields, bounds=tuple(summary.grid.bounds))


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
                                     for name in summary.indices},
                         field_outlines={"grid": _field_outlines(summary),
                                         "thermal": _field_outlines(summary)})


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
    assert "0.0285 ha with valid data" in texts[0]  # 0.95 × 300 m² flown, on the first page
    assert "MicaSense RedEdge-P" in texts[1] and "About this batch" in texts[1]
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


def test_render_report__one_field_table_across_indices_splits_with_repeated_header(
        rendered) -> None:
    _, context, few = rendered
    many_summary = make_summary(n_zones=80)
    many = render_report(summary=many_summary, context=context)
    few_pages, many_pages = _texts(few), _texts(many)
    assert len(many_pages) > len(few_pages)
    # no index page repeats a per-field table: the fields are in one table across indices
    assert not any("Zones — " in t for t in many_pages)
    pages = [i for i, t in enumerate(many_pages) if FIELDS_TITLE in t]
    assert len(pages) == 1
    header = ["#", "field", "area (ha)", "NDVI", "NDRE", "mean °C", "max °C"]
    first = [line.strip() for line in many_pages[pages[0]].split("\n")]
    at = first.index(FIELDS_TITLE)
    start = next(i for i in range(at, len(first)) if first[i: i + 7] == header)
    assert first[start + 7: start + 15] == ["1", "Field 01", "0.1200", "0.500", "0.300", "24.5",
                                            "31.0", "2"]  # 1200 m² = 0.12 ha
    continuation = [line.strip() for line in many_pages[pages[0] + 1].split("\n")]
    assert any(continuation[i: i + 7] == header for i in range(len(continuation)))
    assert "Field 80" in "".join(many_pages[pages[0]: pages[0] + 3])


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
def test_render_report__pages_not_blank_when_rasterised(rendered, tmp_path: Path) -> None:
    _, _, pdf = rendered
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    ARTIFACTS.mkdir(exist_ok=True)
    for page in (1, 3):  # findings and the NDVI page
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
    assert "Since 4 June 2026" in text and "june04" in text
    assert "0.712" in text and "-0.150" in text and "0.1500" in text  # then, Δ, loss (ha)
    assert "NDVI mean by field" in text and "whole grid" in text
    # not comparable: the reasons instead of a map
    document["site"] |= {"comparable": False, "reasons": ["the previous batch june04 has no "
                                                          "explicit reflectance_scale"]}
    document["change"] = {}
    document["zones"][0].pop("change")
    text = _texts(render_report(summary=Summary.model_validate(document), context=context))[-1]
    assert "Not comparable" in text and "explicit reflectance_scale" in text


# ---- page 1 and the fields on the maps (known field values) -----------------------------------

GREEN = (40, 160, 60)
#: the known batch's fields on its 500 m × 250 m grid: North and South share the west half,
#: East is the east half, West lies off the grid (not flown)
KNOWN_OUTLINES = [("North field", box(500000, 4649875, 500250, 4650000)),
                  ("South field", box(500000, 4649750, 500250, 4649875)),
                  ("East field", box(500250, 4649750, 500500, 4650000)),
                  ("West field", box(499000, 4649750, 499100, 4649850))]


def _known_report(tmp_path: Path, *, outlines: bool = True, **update) -> bytes:
    summary = known_summary()
    image = tmp_path / "green.png"
    PILImage.new("RGBA", (500, 250), (*GREEN, 255)).save(image)
    fields = outlines_on_grid(KNOWN_OUTLINES, bounds=tuple(summary.grid.bounds))
    context = known_context(
        maps={k: image for k in ("ndvi", "ndre", "thermal", "change_ndvi", "management_zones")},
        field_outlines={"grid": fields, "thermal": fields} if outlines else {},
        thermal_scale={"ramp": "inferno", "vmin": 10, "vmax": 45}, **update)
    return render_report(summary=summary, context=context)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def test_render_report__first_page_ranks_fields_with_their_figures(tmp_path: Path) -> None:
    first = _texts(_known_report(tmp_path))[0]
    assert ("South field: 31 % stressed or bare (mean NDVI 0.41), down 0.12 NDVI since 14 June, "
            "hottest spot 36.5 °C.") in first
    assert "East field: mean NDVI 0.55, down 0.06 NDVI since 14 June." in first
    lines = _lines(first[first.index("Fields, lowest mean NDVI first"):])
    # rows: number, name, area (ha), mean NDVI, stressed + bare, canopy, change, hottest, rate
    rows = {name: lines[lines.index(name) - 1: lines.index(name) + 8]
            for name in ("South field", "East field", "North field")}
    assert rows["South field"] == ["2", "South field", "3.10", "0.41", "31 %", "35 %",
                                   "▼ -0.12", "36.5", "120"]
    assert rows["East field"] == ["3", "East field", "1.80", "0.55", "15 %", "60 %", "▼ -0.06",
                                  "30.2", "–"]
    assert rows["North field"] == ["1", "North field", "5.20", "0.72", "7 %", "90 %", "▲ +0.03",
                                   "29.0", "80"]
    order = [lines.index(n) for n in ("South field", "East field", "North field", "West field (not")]
    assert order == sorted(order)
    assert "since 14 June" in lines and "rate (kg/ha)" in lines
    facts = first[first.index("About these numbers"):]
    for fact in ("10.10 ha with valid data (grid extent 12.50 ha)", "80.0 % of the grid's pixels",
                 "1: extra/rgb_preview.jpg", "1,234 band values",
                 "farm7-2026-06-14 (14 June): comparable", "30 June 2026, 10:15 UTC"):
        assert fact in facts, fact


def test_render_report__first_page_areas_follow_the_unit_setting(tmp_path: Path) -> None:
    first = _texts(_known_report(tmp_path, area_unit="acre"))[0]
    assert "area (acre)" in first and "24.96 acre with valid data (grid extent 30.89 acre)" in first
    assert "(ha)" not in first and " ha " not in first
    lines = _lines(first[first.index("Fields, lowest mean NDVI first"):])
    assert lines[lines.index("South field") + 1] == "7.66"  # 31,000 m² = 7.66 acre


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
@pytest.mark.parametrize("page_title", ["NDVI", "Thermal — surface temperature (°C)",
                                        "Management zones and prescription", "Since 14 June 2026"])
def test_render_report__maps_carry_the_field_outlines(tmp_path: Path, page_title: str) -> None:
    """Rasterise the page of each kind of map; on the plain green map image the outline between
    North and South field (v = 0.5, west half) and East field's west edge (u = 0.5) are dark."""

    def inked(pdf: bytes) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The page's ink mask (near-black: the outline colour, not the green map) and the map's
        pixel box (rows and columns mostly green; the legend's greens are a thin strip)."""
        number = next(i for i, t in enumerate(_texts(pdf), start=1)
                      if page_title in _lines(t)[:4])
        source = tmp_path / "r.pdf"
        source.write_bytes(pdf)
        prefix = tmp_path / f"page{number}"
        subprocess.run(["pdftoppm", "-png", "-r", "100", "-singlefile", "-f", str(number), "-l",
                        str(number), str(source), str(prefix)], check=True)
        rgb = np.asarray(PILImage.open(f"{prefix}.png").convert("RGB"), dtype=np.int16)
        green = np.abs(rgb - np.array(GREEN)).sum(axis=2) < 40
        rows = np.nonzero(green.sum(axis=1) > 0.5 * green.sum(axis=1).max())[0]
        cols = np.nonzero(green[rows].sum(axis=0) > 0.5 * len(rows))[0]
        return rgb.max(axis=2) < 70, (rows.min(), rows.max(), cols.min(), cols.max())

    ink, (r0, r1, c0, c1) = inked(_known_report(tmp_path))
    h, w = r1 - r0, c1 - c0
    assert w > 2 * h * 0.9  # the 2:1 map
    west_half = slice(c0 + int(0.05 * w), c0 + int(0.45 * w))
    band = slice(r0 + h // 2 - 3, r0 + h // 2 + 4)
    assert ink[band, west_half].any(axis=0).mean() > 0.95  # North | South, all along
    column = slice(r0 + int(0.05 * h), r0 + int(0.95 * h))
    mid = c0 + w // 2
    assert ink[column, mid - 3: mid + 4].any(axis=1).mean() > 0.95  # | East field, all along
    clear = r0 + int(0.4 * h)  # inside North field, below its label: no ink
    assert not ink[clear, west_half].any()
    # the same page without outlines: no ink where the outline was
    ink, (r0, r1, c0, c1) = inked(_known_report(tmp_path, outlines=False))
    assert not ink[r0 + h // 2 - 3: r0 + h // 2 + 4, west_half].any()


def test_render_report__fifty_fields_labelled_on_every_map_without_overlap(tmp_path: Path) -> None:
    summary = make_summary(n_zones=50)
    context = _context(tmp_path, summary)
    pdf = render_report(summary=summary, context=context)
    texts = _texts(pdf)
    ndvi_page = next(t for t in texts if section_title("ndvi", context) in _lines(t)[:5])
    width, height = 200, 150  # the test's map images: drawn at the size _map_block gives them
    ratio = min(FRAME_W / width, MAP_MAX_H / height)
    labels = map_labels(context.field_outlines["grid"], width=width * ratio,
                        height=height * ratio)
    boxes = [label.box for label in labels if label is not None]
    assert len(boxes) == 50
    for i, a in enumerate(boxes):
        assert a.inside(width * ratio, height * ratio)
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    for label in labels:  # on the map by name, or by number and named in the map's key
        if label.numbered:
            assert f"{label.number} Field {label.number:02d}" in ndvi_page
        else:
            assert label.text in ndvi_page
    assert render_report(summary=summary, context=context) == pdf  # deterministic
