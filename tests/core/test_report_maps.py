"""Field outlines on the report's maps and the placement of their labels."""

from __future__ import annotations

import itertools

import pytest
from shapely.geometry import MultiPolygon, box

from pipeline.core.report_maps import Box, map_labels, outlines_on_grid, place_labels

BOUNDS = (500000.0, 4649500.0, 501000.0, 4650000.0)  # 1000 m × 500 m


def _grid_fields(n: int, *, cols: int = 10, size: float = 90.0, origin=(500000.0, 4650000.0),
                 step: float = 100.0):
    x0, y0 = origin
    return [(f"Field {i + 1:02d}", box(x0 + (i % cols) * step, y0 - (i // cols) * step - size,
                                       x0 + (i % cols) * step + size, y0 - (i // cols) * step))
            for i in range(n)]


def _assert_disjoint(labels, width, height):
    boxes = [label.box for label in labels if label is not None]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for b in boxes:
        assert b.inside(width, height), b


def test_outlines_on_grid__normalised_clipped_and_anchored():
    fields = [("inside", box(500250, 4649750, 500500, 4650000)),
              ("half out", box(500900, 4649600, 501100, 4649700)),
              ("outside", box(502000, 4649600, 502100, 4649700)),
              ("two parts", MultiPolygon([box(500000, 4649500, 500100, 4649600),
                                          box(500200, 4649500, 500250, 4649550)]))]
    inside, half, outside, two = outlines_on_grid(fields, bounds=BOUNDS)
    assert sorted(set(inside.rings[0])) == [(0.25, 0.0), (0.25, 0.5), (0.5, 0.0), (0.5, 0.5)]
    assert inside.anchor == pytest.approx((0.375, 0.25), abs=0.01)
    assert max(u for u, _ in half.rings[0]) == 1.0  # clipped at the east edge
    assert 0.9 <= half.anchor[0] <= 1.0 and 0.6 <= half.anchor[1] <= 0.8
    assert outside.rings == [] and outside.anchor is None
    assert len(two.rings) == 2 and two.anchor[0] < 0.1  # the anchor in the larger part


def test_map_labels__fifty_fields_get_names_without_overlap():
    outlines = outlines_on_grid(_grid_fields(50), bounds=BOUNDS)
    width, height = 493.0, 246.5
    labels = map_labels(outlines, width=width, height=height)
    _assert_disjoint(labels, width, height)
    assert all(label is not None and not label.numbered for label in labels)
    assert [label.text for label in labels] == [f"Field {i:02d}" for i in range(1, 51)]


def test_map_labels__crowded_small_map_falls_back_to_numbers_without_overlap():
    # 50 fields of 20 m in a 200 m × 100 m corner, drawn on a small map: names cannot fit
    fields = _grid_fields(50, size=18.0, step=20.0)
    outlines = outlines_on_grid(fields, bounds=BOUNDS)
    width, height = 300.0, 150.0
    labels = map_labels(outlines, width=width, height=height)
    _assert_disjoint(labels, width, height)
    numbered = [label for label in labels if label is not None and label.numbered]
    assert len(numbered) >= 40
    assert all(label.text == str(label.number) for label in numbered)
    assert any(label.leader for label in numbered)  # some moved off their field, with a line
    assert sum(label is not None for label in labels) == 50  # every field labelled


def test_place_labels__deterministic_and_larger_fields_first():
    fields = [(1, "Small", (50.0, 50.0), 1.0), (2, "Large field", (52.0, 50.0), 100.0),
              (3, "Off the map", None, 5.0)]
    first = place_labels(fields, width=100, height=100)
    assert first == place_labels(fields, width=100, height=100)
    small, large, off = first
    assert off is None
    assert not large.numbered and large.box.x0 < 52 < large.box.x1  # on its anchor
    assert not small.box.overlaps(large.box)


def test_place_labels__full_map_leaves_a_field_unlabelled_rather_than_overlapping():
    fields = [(i, f"Field number {i}", (5.0, 5.0), 1.0) for i in range(1, 30)]
    labels = place_labels(fields, width=20, height=12)
    _assert_disjoint(labels, 20, 12)
    assert any(label is None for label in labels)


def test_box__overlap_with_gap():
    a = Box(0, 0, 10, 10)
    assert a.overlaps(Box(9, 9, 12, 12)) and not a.overlaps(Box(10, 0, 12, 10))
    assert a.overlaps(Box(10.5, 0, 12, 10), gap=1.0)
