"""Field outlines and labels over the report's maps: geometry on the map, label placement, drawing.

The outlines are vector paths drawn over the map image (crisp at any zoom), in normalised map
coordinates: u = 0..1 west to east, v = 0..1 north to south over the map's grid extent, so one
outline list serves every map of that grid (index, change and management-zone maps share the
optical grid; thermal has its own). Rings are simplified to a quarter of a preview pixel
(1 / 4096 of the extent) and clipped to the extent, so a 50-field batch costs a few thousand
vertices per map, not the millions a surveyed boundary may carry.

Labels: a field gets its name where the name fits without overlapping another label and inside
the map; otherwise its number (its position in summary.json `zones`, the same on every map and
in the tables) in a small badge, moved away from the field with a leader line when even that does
not fit; the map's key lists the numbered fields. `place_labels` is pure and deterministic; the
boxes it returns never overlap (tests check them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import polylabel

from pipeline.core.summary import FieldOutline

LABEL_FONT = "Helvetica-Bold"
LABEL_SIZE = 7.0
_PAD = 1.5  # around a label's text, in points
_GAP = 1.0  # between two labels, in points
_TOLERANCE = 1 / 4096  # ring simplification, in map fractions

Ring = list[tuple[float, float]]


def outlines_on_grid(fields: Sequence[tuple[str, BaseGeometry]], *,
                     bounds: tuple[float, float, float, float]) -> list[FieldOutline]:
    """Each field's rings (exterior and holes) and label anchor on a map of `bounds` (the grid's
    extent, in the CRS of the geometries): clipped to the extent, simplified, normalised."""
    minx, miny, maxx, maxy = bounds
    width, height = maxx - minx, maxy - miny
    extent = box(*bounds)
    out = []
    for name, geometry in fields:
        clipped = geometry.intersection(extent) if geometry.intersects(extent) else Polygon()
        polygons = [p for p in _polygons(clipped) if not p.is_empty]
        rings: list[Ring] = []
        for polygon in polygons:
            simple = polygon.simplify(_TOLERANCE * max(width, height), preserve_topology=True)
            for ring in [simple.exterior, *simple.interiors]:
                rings.append([(round((x - minx) / width, 6), round((maxy - y) / height, 6))
                              for x, y in ring.coords])
        anchor = None
        if polygons:
            largest = max(polygons, key=lambda p: p.area)
            point = polylabel(largest, tolerance=max(width, height) / 500)
            centre = largest.centroid  # nicer where it is about as deep inside (a rectangle)
            depth = largest.boundary.distance(point)
            if largest.contains(centre) and largest.boundary.distance(centre) >= 0.8 * depth:
                point = centre
            anchor = (round((point.x - minx) / width, 6), round((maxy - point.y) / height, 6))
        out.append(FieldOutline(name=name, rings=rings, anchor=anchor))
    return out


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    return [g for part in getattr(geometry, "geoms", ()) for g in _polygons(part)]


# ---- label placement --------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box, gap: float = 0.0) -> bool:
        return not (self.x1 + gap <= other.x0 or other.x1 + gap <= self.x0
                    or self.y1 + gap <= other.y0 or other.y1 + gap <= self.y0)

    def inside(self, width: float, height: float) -> bool:
        return self.x0 >= 0 and self.y0 >= 0 and self.x1 <= width and self.y1 <= height


@dataclass(frozen=True)
class Label:
    """Where a field's label goes on a map (points, origin bottom-left of the map)."""

    number: int
    text: str  # the name, or the number when `numbered`
    box: Box
    anchor: tuple[float, float]
    numbered: bool
    leader: bool  # a line from the anchor to the box (the box was moved away from the field)


def _text_box(text: str, cx: float, cy: float, size: float) -> Box:
    w = stringWidth(text, LABEL_FONT, size) + 2 * _PAD
    h = size + 2 * _PAD
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _near_offsets(w: float, h: float) -> list[tuple[float, float]]:
    """On the anchor, then just above, below, right, left and on the diagonals."""
    return [(0, 0), (0, h), (0, -h), (w / 2 + h / 2, 0), (-w / 2 - h / 2, 0),
            (w / 2, h), (-w / 2, h), (w / 2, -h), (-w / 2, -h), (0, 2 * h), (0, -2 * h)]


def _ring_offsets(step: float, limit: float) -> list[tuple[float, float]]:
    """Rings of 16 directions at radius step, 2 step, ... up to `limit` (outward search)."""
    out = []
    radius = step
    while radius <= limit:
        for k in range(16):
            angle = math.pi / 2 - k * math.pi / 8  # start north, clockwise
            out.append((radius * math.cos(angle), radius * math.sin(angle)))
        radius += step
    return out


def place_labels(fields: Sequence[tuple[int, str, tuple[float, float] | None, float]], *,
                 width: float, height: float, size: float = LABEL_SIZE) -> list[Label | None]:
    """Labels for `fields` (number, name, anchor in points or None, priority) on a map of
    `width` × `height` points; returned in input order, None for a field without anchor.

    Larger priority (on-map area) is placed first, ties by number. A name is tried on and next
    to its anchor; if none of those places is free, the number is tried there, then outward on
    rings of 16 directions (with a leader line); a field whose number finds no free place at all
    (the map is full) gets None and is listed in the key only.
    """
    order = sorted((i for i, f in enumerate(fields) if f[2] is not None),
                   key=lambda i: (-fields[i][3], fields[i][0]))
    placed: list[Box] = []
    labels: list[Label | None] = [None] * len(fields)

    def free(candidate: Box) -> bool:
        return candidate.inside(width, height) and not any(
            candidate.overlaps(b, _GAP) for b in placed)

    for i in order:
        number, name, (ax, ay), _ = fields[i]
        found = None
        probe = _text_box(name, ax, ay, size)
        for dx, dy in _near_offsets(probe.x1 - probe.x0, probe.y1 - probe.y0):
            candidate = _text_box(name, ax + dx, ay + dy, size)
            if free(candidate):
                found = Label(number, name, candidate, (ax, ay), numbered=False, leader=False)
                break
        if found is None:
            badge = _text_box(str(number), ax, ay, size)
            w, h = badge.x1 - badge.x0, badge.y1 - badge.y0
            near = _near_offsets(w, h)
            for k, (dx, dy) in enumerate([*near, *_ring_offsets(1.5 * h, max(width, height))]):
                candidate = _text_box(str(number), ax + dx, ay + dy, size)
                if free(candidate):
                    far = k >= len(near) or abs(dx) > w or abs(dy) > h
                    found = Label(number, str(number), candidate, (ax, ay), numbered=True,
                                  leader=far)
                    break
        if found is not None:
            placed.append(found.box)
            labels[i] = found
    return labels


# ---- drawing ----------------------------------------------------------------------------------

OUTLINE_HALO = colors.white
OUTLINE_INK = colors.HexColor("#111111")


def draw_fields(canvas, *, outlines: Sequence[FieldOutline], labels: Sequence[Label | None],
                width: float, height: float, size: float = LABEL_SIZE) -> None:
    """Outlines (a white halo under a dark line, visible on any colour) and labels (dark text on
    a white box) over a map drawn at (0, 0) with `width` × `height` points, clipped to it."""
    canvas.saveState()
    clip = canvas.beginPath()
    clip.rect(0, 0, width, height)
    canvas.clipPath(clip, stroke=0, fill=0)
    canvas.setLineJoin(1)
    path = canvas.beginPath()
    for outline in outlines:
        for ring in outline.rings:
            (u, v), *rest = ring
            path.moveTo(u * width, (1 - v) * height)
            for u, v in rest:
                path.lineTo(u * width, (1 - v) * height)
            path.close()
    for colour, line_width in ((OUTLINE_HALO, 2.4), (OUTLINE_INK, 1.0)):
        canvas.setStrokeColor(colour)
        canvas.setLineWidth(line_width)
        canvas.drawPath(path, stroke=1, fill=0)
    canvas.setLineWidth(0.5)
    for label in labels:
        if label is None:
            continue
        b = label.box
        if label.leader:
            cx = min(max(label.anchor[0], b.x0), b.x1)
            cy = min(max(label.anchor[1], b.y0), b.y1)
            canvas.setStrokeColor(OUTLINE_INK)
            canvas.line(label.anchor[0], label.anchor[1], cx, cy)
            canvas.setFillColor(OUTLINE_INK)
            canvas.circle(label.anchor[0], label.anchor[1], 1.2, stroke=0, fill=1)
        canvas.setFillColor(colors.white)
        canvas.setStrokeColor(OUTLINE_INK)
        canvas.roundRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, 1.5 if label.numbered else 1.0,
                         stroke=1 if label.numbered else 0, fill=1)
        canvas.setFillColor(OUTLINE_INK)
        canvas.setFont(LABEL_FONT, size)
        canvas.drawCentredString((b.x0 + b.x1) / 2, b.y0 + _PAD + 0.2 * size, label.text)
    canvas.restoreState()


def map_labels(outlines: Sequence[FieldOutline], *, width: float,
               height: float) -> list[Label | None]:
    """`place_labels` for `outlines` (numbered 1.. in their order) on a `width` × `height` map;
    priority: the field's on-map bounding box area."""
    fields = []
    for number, outline in enumerate(outlines, start=1):
        anchor = None if outline.anchor is None else (outline.anchor[0] * width,
                                                      (1 - outline.anchor[1]) * height)
        us = [u for ring in outline.rings for u, _ in ring]
        vs = [v for ring in outline.rings for _, v in ring]
        area = (max(us) - min(us)) * (max(vs) - min(vs)) if us else 0.0
        fields.append((number, outline.name, anchor, area))
    return place_labels(fields, width=width, height=height)
