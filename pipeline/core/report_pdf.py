"""The PDF report (A4): findings first, then the batch, the fields, one section per index, thermal,
management zones and the change since the previous flight. Same facts as summary.json.

Page 1 is what an agronomist reads first (`report_findings`: fields ranked by vigour, the flagged
ones in sentences made of the numbers, the facts that say whether to trust them). Every map
carries the field outlines and labels as vector paths over the image (`report_maps`).

`render_report` is pure: same `Summary` + `ReportContext` → byte-identical PDF (reportlab invariant
mode, creation date fixed to `summary.generated_at`). Map images are the PNG previews named in the
context; their legends are drawn from the summary's `scale`, so colours agree with the heatmaps.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import datetime
from xml.sax.saxutils import escape

from reportlab import rl_config
from reportlab.graphics.shapes import Drawing, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    LongTable,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from pipeline.core import isoxml
from pipeline.core import report_charts as charts
from pipeline.core import report_maps
from pipeline.core.change import CHANGE_SCALE
from pipeline.core.report_findings import STEADY, Findings, area_text, build_findings, day_text
from pipeline.core.summary import (
    FieldOutline,
    IndexSummary,
    ReportContext,
    Summary,
    ThermalSummary,
)
from pipeline.core.units import M2_PER_HA, M2_PER_UNIT

# Binary PDF streams, not ASCII85: without reportlab's C accelerator, encoding the map JPEGs in
# ASCII85 took ~75 % of the render time (pure Python) and made the file 25 % larger. Set once for
# the process (read by reportlab at each stream), so every render encodes alike.
rl_config.useA85 = 0

PAGE_W, PAGE_H = A4
MARGIN = 18 * mm
FRAME_W = PAGE_W - 2 * MARGIN
MAP_MAX_H = 95 * mm
THERMAL_TITLE = "Thermal — surface temperature (°C)"
MZ_TITLE = "Management zones and prescription"
FIELDS_TITLE = "Fields — mean of each index"
FLAG_TINT = colors.HexColor("#fde8e6")
DOWN, UP, STEADY_INK = (colors.HexColor("#b42318"), colors.HexColor("#1a7f37"),
                        colors.HexColor("#5b6670"))

_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontName="Helvetica", fontSize=9, leading=12)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8, leading=10)
H1 = ParagraphStyle("h1", parent=_STYLES["Heading1"], fontName="Helvetica-Bold", fontSize=16, leading=20)
H2 = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontName="Helvetica-Bold", fontSize=11, leading=14,
                    spaceBefore=8, spaceAfter=4, keepWithNext=1)
TITLE = ParagraphStyle("title", parent=H1, fontSize=20, leading=24, spaceAfter=2)
CELL = ParagraphStyle("cell", parent=SMALL, fontSize=8, leading=9.5)
CELL_RIGHT = ParagraphStyle("cell_right", parent=CELL, alignment=2)
HEAD = ParagraphStyle("head", parent=CELL, fontName="Helvetica-Bold")
HEAD_RIGHT = ParagraphStyle("head_right", parent=HEAD, alignment=2)
TABLE_STYLE = TableStyle([
    ("FONT", (0, 0), (-1, -1), "Helvetica", 8.5),
    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e9ed")),
    ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#5b6670")),
    ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f7f9")]),
    ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ("TOPPADDING", (0, 0), (-1, -1), 2),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
])


def section_title(name: str, context: ReportContext) -> str:
    """The heading of an index's section, e.g. "NDVI — Normalized difference vegetation index"
    (the long name is the index registry's, carried by `context.index_info`)."""
    info = context.index_info.get(name)
    return f"{name.upper()} — {info.long_name}" if info and info.long_name else name.upper()


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


_area = area_text  # an area in the report's unit (IMAGERY_AREA_UNIT: ha or acre)


def _when(value: datetime | None) -> str:
    return "unknown" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _table(rows: Sequence[Sequence[object]], widths: Sequence[float] | None = None, *, long: bool = False,
           extra: Sequence[tuple] = ()) -> Table:
    cls = LongTable if long else Table
    table = cls([list(r) for r in rows], colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TABLE_STYLE)
    if extra:
        table.setStyle(TableStyle(list(extra)))
    return table


# ---- page furniture ---------------------------------------------------------------------------


def _canvas_class(summary: Summary) -> type[Canvas]:
    """A canvas that writes "page N of M" once the page count is known, and a fixed creation date."""
    stamp = summary.generated_at.strftime("D:%Y%m%d%H%M%S+00'00'")

    class NumberedCanvas(Canvas):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []
            self.setDateFormatter(lambda *_: stamp)

        def showPage(self) -> None:  # noqa: N802 (reportlab API)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self.setFont("Helvetica", 8)
                self.setFillColor(colors.HexColor("#444444"))
                self.drawRightString(PAGE_W - MARGIN, MARGIN / 2, f"page {number} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def _furniture(summary: Summary, *, header: bool) -> Callable[[Canvas, BaseDocTemplate], None]:
    generated = _when(summary.generated_at)

    def on_page(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.HexColor("#444444"))
        if header:
            y = PAGE_H - MARGIN / 2 - 4
            canvas.drawString(MARGIN, y, f"Imagery report · batch {summary.batch_id}")
            canvas.drawRightString(PAGE_W - MARGIN, y, f"generated {generated}")
            canvas.setStrokeColor(colors.HexColor("#b0b6bc"))
            canvas.setLineWidth(0.5)
            canvas.line(MARGIN, y - 4, PAGE_W - MARGIN, y - 4)
        canvas.drawString(MARGIN, MARGIN / 2, f"batch {summary.batch_id} · generated {generated} · "
                                              f"code {summary.code_version}")
        canvas.restoreState()

    return on_page


def _document(buffer: io.BytesIO, summary: Summary, *, invariant: bool) -> BaseDocTemplate:
    doc = BaseDocTemplate(
        buffer, pagesize=A4, invariant=1 if invariant else 0, leftMargin=MARGIN, rightMargin=MARGIN,
        topMargin=MARGIN, bottomMargin=MARGIN, title=f"Imagery report {summary.batch_id}",
        author="imagery pipeline", subject=f"batch {summary.batch_id}", creator=f"imagery pipeline {summary.code_version}",
    )
    frame = Frame(MARGIN, MARGIN, FRAME_W, PAGE_H - 2 * MARGIN, id="main")
    doc.addPageTemplates([
        PageTemplate(id="cover", frames=[frame], onPage=_furniture(summary, header=False)),
        PageTemplate(id="body", frames=[frame], onPage=_furniture(summary, header=True)),
    ])
    return doc


# ---- sections ---------------------------------------------------------------------------------


def _not_flown(summary: Summary) -> list[str]:
    """Zones without any valid pixel in this batch (area 0, null statistics)."""
    return [z.name for z in summary.zones if z.area_m2 == 0
            and all(v.mean is None for v in z.indices.values())
            and (z.thermal is None or z.thermal.mean_c is None)]


def _zones_line(summary: Summary) -> str:
    missing = _not_flown(summary)
    if not missing:
        return str(len(summary.zones))
    return (f"{len(summary.zones)}, of which {len(missing)} without imagery in this batch (not "
            f"flown; area 0, no statistics): {', '.join(missing)}")


def _masked_line(context: ReportContext) -> str:
    masked = {n: c for n, c in context.masked_values.items() if c}
    if not masked:
        return "none: every value is a reflectance in [-1, 10]"
    return ("treated as nodata (not finite or outside [-1, 10], e.g. an undeclared nodata "
            "value): " + "; ".join(f"{n} {c:,} values" for n, c in sorted(masked.items())))


def _change_cell(delta: float | None) -> Paragraph | str:
    """A change as an arrow and a signed number (▼ red down, ▲ green up, = unchanged)."""
    if delta is None:
        return "–"
    if abs(delta) < STEADY:
        arrow, ink = "=", STEADY_INK
    else:
        arrow, ink = ("▼", DOWN) if delta < 0 else ("▲", UP)
    return Paragraph(f'<font color="#{ink.hexval()[2:]}">{arrow} {delta:+.2f}</font>',
                     CELL_RIGHT)


def _field_rows(findings: Findings, context: ReportContext) -> tuple[list[list], list[float],
                                                                     list[tuple]]:
    """The ranked field table of page 1: rows, column widths, row styles (flagged rows tinted)."""
    unit = context.area_unit
    fields = findings.fields
    label = findings.index.upper() if findings.index else ""
    columns: list[tuple[str, float, Callable]] = [
        ("#", 8 * mm, lambda f: str(f.number)),
        ("field", 0.0, lambda f: Paragraph(("<b>%s</b>" if f.reasons else "%s")
                                           % escape(f.name + ("" if f.flown else " (not flown)")),
                                           CELL)),
        (f"area ({unit})", 20 * mm, lambda f: _area(f.area_m2, unit) if f.flown else "–"),
    ]
    if findings.index:
        columns.append((f"mean {label}", 17 * mm, lambda f: _num(f.vigour, 2)))
    if any(f.low_share is not None for f in fields):
        columns.append(("stressed + bare", 22 * mm, lambda f: _share(f.low_share)))
    if any(f.canopy_cover is not None for f in fields):
        columns.append(("canopy", 15 * mm, lambda f: _share(f.canopy_cover)))
    if findings.has_change:
        since = day_text(findings.previous, reference=context.captured_at)
        columns.append((f"since {since}", 24 * mm, lambda f: _change_cell(f.change)))
    if any(f.hottest_c is not None for f in fields):
        columns.append(("hottest °C", 18 * mm, lambda f: _num(f.hottest_c, 1)))
    if findings.rate_unit:
        columns.append((f"rate ({findings.rate_unit})", 22 * mm, lambda f: _num(f.rate, 0)))
    fixed = sum(w for _, w, _ in columns)
    widths = [w or FRAME_W - fixed for _, w, _ in columns]
    rows = [[Paragraph(escape(name), HEAD if i < 2 else HEAD_RIGHT)
             for i, (name, _, _) in enumerate(columns)]]
    styles = [("ALIGN", (1, 0), (1, -1), "LEFT"), ("VALIGN", (0, 0), (-1, 0), "BOTTOM")]
    for row, f in enumerate(fields, start=1):
        rows.append([cell(f) for _, _, cell in columns])
        if f.reasons:
            styles.append(("BACKGROUND", (0, row), (-1, row), FLAG_TINT))
    return rows, widths, styles


def _share(value: float | None) -> str:
    return "–" if value is None else f"{round(value * 100):d} %"


def _first_page(summary: Summary, context: ReportContext, findings: Findings) -> list[Flowable]:
    """What a reader who opens only this page needs: which fields need attention and why, every
    field ranked, and whether to trust the numbers."""
    captured = (f"captured {day_text(context.captured_at)}" if context.captured_at
                else "capture date unknown")
    site = f" · site {summary.site.site_id}" if summary.site else ""
    story: list[Flowable] = [
        Paragraph("Crop imagery report", TITLE),
        Paragraph(escape(f"{summary.batch_id} · {captured}{site}"), H2),
        Paragraph("What needs attention", H2),
        *[Paragraph("• " + escape(text), BODY) for text in findings.sentences],
        Paragraph(escape(findings.rule), SMALL),
    ]
    if findings.fields:
        order = (f"lowest mean {findings.index.upper()} first" if findings.index
                 else "hottest first")
        rows, widths, styles = _field_rows(findings, context)
        story += [Paragraph(f"Fields, {order}", H2),
                  _table(rows, widths, long=True, extra=styles),
                  Paragraph("#: the field's number on the maps. Flagged fields are tinted. "
                            "Stressed + bare: share of the field's valid pixels with NDVI below "
                            "0.4; canopy: share at or above the canopy threshold; hottest: the "
                            "field's warmest pixel; rate: the prescription averaged over the "
                            "field's management zones.", SMALL)]
    facts = Table([[Paragraph(f"<b>{escape(k)}</b>", SMALL), Paragraph(escape(v), SMALL)]
                   for k, v in findings.facts], colWidths=[32 * mm, FRAME_W - 32 * mm],
                  hAlign="LEFT")
    facts.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.HexColor("#d0d4d8")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]))
    story += [Paragraph("About these numbers", H2), facts]
    return story


def _about(summary: Summary, context: ReportContext) -> list[Flowable]:
    """The batch in detail (grid, sensor, what was left out) and the list of sections."""
    unit = context.area_unit
    grid = summary.grid
    extent_m2 = grid.width * grid.height * grid.pixel_size[0] * grid.pixel_size[1]
    imaged_m2 = max((s.valid_area_m2 for s in summary.indices.values()), default=0.0)
    platform = " / ".join(p for p in (context.platform, context.sensor) if p) or "not stated"
    rows = [
        ["Batch", summary.batch_id],
        ["Captured", _when(context.captured_at)],
        ["Platform / sensor", platform],
        ["Area covered", f"{_area(imaged_m2, unit)} {unit} with data "
                         f"(grid extent {_area(extent_m2, unit)} {unit})"],
        ["Grid CRS", grid.crs],
        ["Pixel size", f"{grid.pixel_size[0]:g} × {grid.pixel_size[1]:g} "
                       f"{'m' if _metric(grid.crs) else '(CRS units)'}"],
        ["Grid size", f"{grid.width:,} × {grid.height:,} px"],
        ["Bounds", ", ".join(f"{b:,.2f}" for b in grid.bounds)],
        ["Indices", ", ".join(n.upper() for n in summary.indices) or "none"],
        ["Thermal", "yes" if summary.thermal else "no"],
        ["Zones", _zones_line(summary)],
        ["Masked reflectance", _masked_line(context)],
        ["Generated", _when(summary.generated_at)],
        ["Code version", summary.code_version],
    ]
    if summary.ignored_images:
        rows.insert(-2, ["Ignored images", "; ".join(f"{i.path} ({i.reason})"
                                                     for i in summary.ignored_images)])
    table = Table([[Paragraph(f"<b>{escape(k)}</b>", BODY), Paragraph(escape(v), BODY)]
                   for k, v in rows], colWidths=[45 * mm, FRAME_W - 45 * mm], hAlign="LEFT")
    table.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.HexColor("#d0d4d8")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    contents = ([FIELDS_TITLE] if summary.zones else []) + [
        section_title(n, context) for n in summary.indices] + (
        [THERMAL_TITLE] if summary.thermal else []) + (
        [MZ_TITLE] if summary.management_zones else []) + (
        [_since_title(summary)] if _since_title(summary) else [])
    return [
        PageBreak(),
        Paragraph("About this batch", H1),
        table,
        Spacer(1, 6 * mm),
        Paragraph("Sections", H2),
        *[Paragraph(f"{i}. {escape(t)}", BODY) for i, t in enumerate(contents, start=1)],
        Spacer(1, 4 * mm),
        Paragraph("Values are computed on the batch grid from surface reflectance; percentages of "
                  "a class are of pixels with valid data. Maps are oriented to grid north; the "
                  "fields are outlined on every map, labelled by name or by their number.", SMALL),
    ]


def _fields_section(summary: Summary, context: ReportContext) -> list[Flowable]:
    """One row per field, one column per index mean (and thermal mean and max): the compact
    table the index pages no longer repeat."""
    if not summary.zones:
        return []
    unit = context.area_unit
    names = list(summary.indices)
    thermal = any(z.thermal is not None for z in summary.zones)
    header = ["#", "field", f"area ({unit})", *[n.upper() for n in names]]
    header += ["mean °C", "max °C"] if thermal else []
    value_w = min(16 * mm, (FRAME_W - 8 * mm - 30 * mm - 18 * mm) / max(len(header) - 3, 1))
    widths = [8 * mm, 0.0, 18 * mm] + [value_w] * (len(header) - 3)
    widths[1] = FRAME_W - sum(widths)
    missing = set(_not_flown(summary))
    rows = [header]
    for number, zone in enumerate(summary.zones, start=1):
        label = zone.name + (" (not flown)" if zone.name in missing else "")
        row = [str(number), Paragraph(escape(label), CELL), _area(zone.area_m2, unit)]
        row += [_num(zone.indices[n].mean if n in zone.indices else None) for n in names]
        if thermal:
            row += [_num(zone.thermal.mean_c if zone.thermal else None, 1),
                    _num(zone.thermal.max_c if zone.thermal else None, 1)]
        rows.append(row)
    return [Spacer(1, 6 * mm), Paragraph(FIELDS_TITLE, H1),
            Paragraph("Mean of each index over the field's valid pixels; the index pages show "
                      "the maps with every field outlined. #: the field's number on the maps.",
                      SMALL),
            _table(rows, widths, long=True, extra=[("ALIGN", (1, 0), (1, -1), "LEFT"),
                                                   ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
                                                   ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8)])]


def _map_block(summary: Summary, context: ReportContext, key: str, scale, unit: str) -> list[Flowable]:
    path = context.maps.get(key)
    if path is None:
        return [Paragraph(f"No map image was supplied for {escape(key)}.", BODY)]
    pixel_w, pixel_h = ImageReader(str(path)).getSize()
    ratio = min(FRAME_W / pixel_w, MAP_MAX_H / pixel_h)
    width, height = pixel_w * ratio, pixel_h * ratio
    image = _Framed(str(path), width=width, height=height, hAlign="LEFT",
                    outlines=_outlines(context, key))
    grid = summary.grid
    ground_w = grid.width * grid.pixel_size[0] if _metric(grid.crs) else None
    parts: list[Flowable] = [image, *image.key(), Spacer(1, 2 * mm),
                             charts.scale_bar(width=FRAME_W, map_width_pt=width,
                                              ground_width_m=ground_w)]
    if scale is not None:
        parts += [Spacer(1, 1 * mm), charts.legend(scale, width=min(FRAME_W, max(width, 90 * mm)), unit=unit)]
    return [KeepTogether(parts)]


def _outlines(context: ReportContext, key: str) -> list[FieldOutline]:
    """The field outlines of map `key`: the thermal grid's for "thermal", else the optical
    grid's (index, change and management-zone maps)."""
    frame = "thermal" if key == "thermal" else "grid"
    return list(context.field_outlines.get(frame) or ())


class _Framed(Image):
    """The map with a hairline frame, so white no-data edges do not dissolve into the page, and
    the field outlines and labels drawn over it as vector paths."""

    def __init__(self, path: str, *, width: float, height: float,
                 outlines: Sequence[FieldOutline] = (), **kwargs: object) -> None:
        super().__init__(path, width=width, height=height, **kwargs)
        self.outlines = list(outlines)
        self.labels = report_maps.map_labels(self.outlines, width=width, height=height)

    def key(self) -> list[Flowable]:
        """The numbered fields' names (and those the map had no room to label), under the map."""
        numbered = [f"{label.number} {escape(o.name)}"
                    for o, label in zip(self.outlines, self.labels, strict=True)
                    if label is not None and label.numbered]
        crowded = [escape(o.name) for o, label in zip(self.outlines, self.labels, strict=True)
                   if label is None and o.anchor is not None]
        parts = []
        if numbered:
            parts.append("Fields by number: " + " · ".join(numbered) + ".")
        if crowded:
            parts.append("Not labelled (no room on the map): " + ", ".join(crowded) + ".")
        return [Spacer(1, 1 * mm), Paragraph(" ".join(parts), SMALL)] if parts else []

    def draw(self) -> None:
        super().draw()
        if self.outlines:
            report_maps.draw_fields(self.canv, outlines=self.outlines, labels=self.labels,
                                    width=self.drawWidth, height=self.drawHeight)
        self.canv.setStrokeColor(colors.HexColor("#9aa0a6"))
        self.canv.setLineWidth(0.4)
        self.canv.rect(0, 0, self.drawWidth, self.drawHeight, stroke=1, fill=0)


def _metric(crs: str) -> bool:
    try:
        from pyproj import CRS

        axis = CRS.from_user_input(crs).axis_info
        return bool(axis) and axis[0].unit_name in {"metre", "meter"}
    except Exception:  # noqa: BLE001 - an unparseable CRS only loses the scale bar
        return False


def _histogram_block(context: ReportContext, key: str, scale, unit: str) -> list[Flowable]:
    hist = context.histograms.get(key)
    if hist is None:
        return []
    return [Paragraph("Distribution", H2), charts.histogram(hist, scale=scale, width=FRAME_W, height=48 * mm,
                                                          unit=unit)]


def _index_section(name: str, stats: IndexSummary, summary: Summary, context: ReportContext) -> list[Flowable]:
    unit = context.area_unit
    story: list[Flowable] = [PageBreak(), Paragraph(escape(section_title(name, context)), H1)]
    info = context.index_info.get(name)
    if info and (info.formula or info.description):
        kind = "custom index (server configuration)" if info.custom else "index"
        story.append(Paragraph(escape(f"{name} = {info.formula}" if info.formula else "")
                               + f" <i>({kind})</i>. " + escape(info.description), SMALL))
    story += _map_block(summary, context, name, stats.scale, unit="")
    story += [Paragraph("Statistics", H2), _table([
        ["mean", "std", "min", "max", "p10", "p50", "p90", "valid", f"valid area ({unit})"],
        [_num(stats.mean), _num(stats.std), _num(stats.min), _num(stats.max), _num(stats.p10), _num(stats.p50),
         _num(stats.p90), _pct(stats.valid_fraction), _area(stats.valid_area_m2, unit)],
    ])]
    story += _histogram_block(context, name, stats.scale, unit="")
    if stats.classes:
        rows = [["", "class", "range", f"area ({unit})", "% of valid"]]
        swatches = []
        for row, c in enumerate(stats.classes, start=1):
            rows.append(["", c.name, f"{c.lower:g} to {c.upper:g}", _area(c.area_m2, unit),
                         _pct(c.fraction)])
            mid = (max(c.lower, stats.scale.vmin) + min(c.upper, stats.scale.vmax)) / 2
            swatches.append(("BACKGROUND", (0, row), (0, row), charts.ramp_colours(stats.scale, [mid])[0]))
        widths = [5 * mm, 32 * mm, 40 * mm, 30 * mm, 30 * mm]
        story += [Paragraph("Classes", H2), _table(rows, widths, extra=[("ALIGN", (1, 0), (1, -1), "LEFT"),
                                                                         *swatches])]
    return story


def _thermal_section(thermal: ThermalSummary, summary: Summary, context: ReportContext) -> list[Flowable]:
    unit = context.area_unit
    scale = context.thermal_scale
    story: list[Flowable] = [PageBreak(), Paragraph(THERMAL_TITLE, H1)]
    story += _map_block(summary, context, "thermal", scale, unit="°C")
    story += [Paragraph("Statistics", H2), _table([
        ["mean °C", "min °C", "max °C", "p90 °C", "hotspot threshold °C", "hotspot area (m²)"],
        [_num(thermal.mean_c, 1), _num(thermal.min_c, 1), _num(thermal.max_c, 1), _num(thermal.p90_c, 1),
         _num(thermal.hotspot_threshold_c, 1), _num(thermal.hotspot_area_m2, 2)],
    ])]
    story += _histogram_block(context, "thermal", scale, unit="°C")
    threshold = _num(thermal.hotspot_threshold_c, 1)
    story.append(Paragraph(f"Hotspots (pixels at or above {threshold} °C)", H2))
    if thermal.hotspots:
        rows = [["#", "centroid x", "centroid y", "area (m²)", "max °C"]]
        rows += [[str(i), f"{h.centroid[0]:,.2f}", f"{h.centroid[1]:,.2f}", _num(h.area_m2, 2), _num(h.max_c, 1)]
                 for i, h in enumerate(thermal.hotspots, start=1)]
        story.append(_table(rows, [12 * mm, 40 * mm, 40 * mm, 28 * mm, 25 * mm], long=True))
        story.append(Paragraph(f"Centroids in {escape(summary.grid.crs)}.", SMALL))
    else:
        story.append(Paragraph("No hotspot.", BODY))
    return story


def _zone_legend(colours: Sequence[tuple[int, int, int]], width: float) -> Drawing:
    drawing = Drawing(width, 16)
    x = 0.0
    for number, rgb in enumerate(colours, start=1):
        drawing.add(Rect(x, 3, 12, 10, fillColor=_rgb(rgb), strokeColor=colors.black,
                         strokeWidth=0.4))
        label = f"class {number}"
        if number == 1:
            label += " (lowest vigour)"
        elif number == len(colours):
            label += " (highest vigour)"
        drawing.add(String(x + 15, 5, label, fontName="Helvetica", fontSize=8))
        x += 15 + stringWidth(label, "Helvetica", 8) + 12
    drawing.add(String(width, 5, "white: no data", fontName="Helvetica", fontSize=8,
                       textAnchor="end"))
    return drawing


def _rgb(rgb: Sequence[int]) -> colors.Color:
    return colors.Color(*(v / 255 for v in rgb))


def _zone_map(summary: Summary, context: ReportContext) -> list[Flowable]:
    path = context.maps.get("management_zones")
    if path is None:
        return []
    pixel_w, pixel_h = ImageReader(str(path)).getSize()
    ratio = min(FRAME_W / pixel_w, MAP_MAX_H / pixel_h)
    grid = summary.grid
    ground_w = grid.width * grid.pixel_size[0] if _metric(grid.crs) else None
    image = _Framed(str(path), width=pixel_w * ratio, height=pixel_h * ratio, hAlign="LEFT",
                    outlines=_outlines(context, "management_zones"))
    return [KeepTogether([
        image, *image.key(),
        Spacer(1, 2 * mm),
        charts.scale_bar(width=FRAME_W, map_width_pt=pixel_w * ratio, ground_width_m=ground_w),
        _zone_legend(context.zone_colours, FRAME_W)])]


def _management_zones_section(summary: Summary, context: ReportContext) -> list[Flowable]:
    """The zone map and legend, a table per class and per field (areas in the report's unit,
    total product = rate × area in the rate's own area unit), and canopy cover per field."""
    mz = summary.management_zones
    unit = context.area_unit
    story: list[Flowable] = [PageBreak(), Paragraph(MZ_TITLE, H1), *_zone_map(summary, context)]
    rate_unit = mz.unit or ""
    per_m2 = M2_PER_UNIT[isoxml.rate_unit(rate_unit).per] if rate_unit else M2_PER_HA
    amount = escape(rate_unit.split("/")[0])
    product = (f"{escape(mz.product)} in {escape(rate_unit)}" if mz.product
               else "no prescription in the manifest")
    story.append(Paragraph(f"Classes ({escape(mz.method)}); product: {product}.", SMALL))

    def total(rate: float | None, area_m2: float) -> str:
        return "–" if rate is None else f"{rate * area_m2 / per_m2:,.1f} {amount}"

    valid = sum(c.area_m2 for c in mz.classes)
    index = escape(context.zone_index.upper())
    rows = [["", "class", f"area ({unit})", "% of valid", f"mean {index}",
             f"rate ({escape(rate_unit) or '–'})", "total product"]]
    swatches = []
    for row, c in enumerate(mz.classes, start=1):
        share = c.area_m2 / valid if valid else None
        rows.append(["", str(c.zone_class), _area(c.area_m2, unit), _pct(share),
                     _num(c.ndvi_mean), _num(c.rate, 2), total(c.rate, c.area_m2)])
        if c.zone_class <= len(context.zone_colours):
            colour = _rgb(context.zone_colours[c.zone_class - 1])
            swatches.append(("BACKGROUND", (0, row), (0, row), colour))
    if all(c.rate is not None for c in mz.classes):
        everything = sum(c.rate * c.area_m2 for c in mz.classes) / per_m2
        rows.append(["", "all", _area(valid, unit), _pct(1.0 if valid else None), "", "",
                     f"{everything:,.1f} {amount}"])
    widths = [5 * mm, 14 * mm, 26 * mm, 22 * mm, 22 * mm, 30 * mm, 36 * mm]
    story += [Paragraph("Per class", H2), _table(rows, widths, extra=swatches)]
    if context.zone_parts:
        rows = [["field", "class", f"area ({unit})", f"mean {index}", "rate", "total product"]]
        order = sorted(context.zone_parts,
                       key=lambda p: (p.field is None, p.field or "", p.zone_class))
        for part in order:
            rows.append([Paragraph(escape(part.field or "outside every field"), SMALL),
                         str(part.zone_class), _area(part.area_m2, unit), _num(part.ndvi_mean),
                         _num(part.rate, 2), total(part.rate, part.area_m2)])
        widths = [58 * mm, 14 * mm, 26 * mm, 22 * mm, 22 * mm, 32 * mm]
        story += [Paragraph("Per field", H2), _table(rows, widths, long=True)]
    covered = [z for z in summary.zones if z.canopy_cover is not None or z.area_m2 == 0]
    if covered:
        rows = [["field", f"area ({unit})", "canopy cover"]]
        rows += [[Paragraph(escape(z.name), SMALL), _area(z.area_m2, unit), _pct(z.canopy_cover)]
                 for z in covered]
        story += [Paragraph("Canopy cover per field", H2),
                  _table(rows, [70 * mm, 30 * mm, 30 * mm], long=True),
                  Paragraph("Canopy cover: share of the field's valid pixels whose NDVI is at or "
                            "above the server's canopy threshold (IMAGERY_CANOPY_NDVI).", SMALL)]
    story += [Paragraph(escape(note), SMALL) for note in context.zone_notes]
    return story


CHANGE_INDEX = "ndvi"  # the index of the "Since" page (the one agronomists act on)


def _since_title(summary: Summary) -> str | None:
    """"Since 14 June 2026" (the previous flight's capture date), None without a previous flight."""
    site = summary.site
    if site is None or site.previous_batch_id is None:
        return None
    when = (day_text(site.previous_captured_at) if site.previous_captured_at
            else site.previous_batch_id)
    return f"Since {when}"


def _since_section(summary: Summary, context: ReportContext) -> list[Flowable]:
    """"Since <previous date>": the change map, the per-field table and the NDVI series."""
    site = summary.site
    title = _since_title(summary)
    if title is None:
        return []
    story: list[Flowable] = [PageBreak(), Paragraph(escape(title), H1),
                             Paragraph(f"Site {escape(site.site_id)}: this flight compared with "
                                       f"{escape(site.previous_batch_id)}.", BODY)]
    change = summary.change.get(CHANGE_INDEX)
    if not site.comparable or change is None:
        story += [Paragraph("Not comparable", H2)]
        story += [Paragraph("• " + escape(r), BODY) for r in site.reasons]
    else:
        story += _map_block(summary, context, f"change_{CHANGE_INDEX}", CHANGE_SCALE,
                            unit="Δ NDVI")
        unit = context.area_unit
        story += [Paragraph("Change of NDVI", H2), _table([
            ["mean Δ", "p10", "p50", "p90", f"gain > +0.1 ({unit})", f"loss < −0.1 ({unit})"],
            [_num(change.mean), _num(change.p10), _num(change.p50), _num(change.p90),
             _area(change.gain_area_m2, unit), _area(change.loss_area_m2, unit)]])]
        rows = [["field", "then", "now", "Δ", f"gain ({unit})", f"loss ({unit})"]]
        for zone in summary.zones:
            delta = (zone.change or {}).get(CHANGE_INDEX)
            now = zone.indices.get(CHANGE_INDEX)
            rows.append([Paragraph(escape(zone.name), SMALL),
                         _num(context.previous_zone_means.get(zone.name)),
                         _num(now.mean if now else None), _num(delta.mean if delta else None),
                         _area(delta.gain_area_m2 if delta else None, unit),
                         _area(delta.loss_area_m2 if delta else None, unit)])
        if len(rows) > 1:
            story += [Paragraph("Fields — NDVI", H2),
                      _table(rows, [55 * mm, 22 * mm, 22 * mm, 22 * mm, 25 * mm, 25 * mm],
                             long=True)]
    if context.site_series:
        story += [Paragraph("NDVI mean by field, all flights of the site", H2),
                  charts.series_chart(dict(context.site_series), width=FRAME_W)]
    return story


def render_report(*, summary: Summary, context: ReportContext, invariant: bool = True) -> bytes:
    """The report as PDF bytes (A4). With `invariant`, identical inputs give identical bytes."""
    buffer = io.BytesIO()
    doc = _document(buffer, summary, invariant=invariant)
    findings = build_findings(summary=summary, context=context)
    # page 1 is the "cover" template (no header); every later page, even one the first page's
    # table runs over to, the "body" one
    story: list[Flowable] = [NextPageTemplate("body"), *_first_page(summary, context, findings),
                             *_about(summary, context), *_fields_section(summary, context)]
    for name, stats in summary.indices.items():
        story += _index_section(name, stats, summary, context)
    if summary.thermal is not None:
        story += _thermal_section(summary.thermal, summary, context)
    if summary.management_zones is not None:
        story += _management_zones_section(summary, context)
    story += _since_section(summary, context)
    doc.build(story, canvasmaker=_canvas_class(summary))
    return buffer.getvalue()
