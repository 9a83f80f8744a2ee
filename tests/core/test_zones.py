"""Zones: GeoJSON parsing and CRS handling, lazy labels by pixel centre, per-zone statistics."""

from __future__ import annotations

import json

import dask
import dask.array as dsa
import numpy as np
import pytest
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import Point

from pipeline.core.errors import ZonesError
from pipeline.core.grid import Grid
from pipeline.core.stats import finalize_zone, lazy_stats, zone_area_m2
from pipeline.core.zones import load_zones, zone_labels

GRID = Grid(crs=CRS.from_epsg(32633), transform=Affine(0.5, 0, 500_000, 0, -0.5, 5_000_050),
            width=100, height=100)
TO_WGS84 = Transformer.from_crs(32633, 4326, always_xy=True)


def _feature(name, rings, kind="Polygon"):
    props = {} if name is None else {"name": name}
    return {"type": "Feature", "properties": props, "geometry": {"type": kind, "coordinates": rings}}


def _utm_ring(x0, y0, x1, y1, *, wgs84=False):
    ring = [(x0, y0), (x1, y0 + 0.3), (x1, y1), (x0 + 3.3, y1), (x0, y0)]
    return [list(TO_WGS84.transform(x, y)) if wgs84 else [x, y] for x, y in ring]


def _fc(features, crs=None):
    doc = {"type": "FeatureCollection", "features": features}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    return json.dumps(doc).encode()


ZONE_A = _utm_ring(500_003.1, 5_000_011.7, 500_031.4, 5_000_040.2)
ZONE_B = _utm_ring(500_020.2, 5_000_002.6, 500_047.9, 5_000_027.3)


@pytest.mark.parametrize("crs", [None, "EPSG:32633", "urn:ogc:def:crs:EPSG::32633"])
def test_load_zones__wgs84_default_and_legacy_crs_member(crs):
    ring = _utm_ring(500_003.1, 5_000_011.7, 500_031.4, 5_000_040.2, wgs84=crs is None)
    zones = load_zones(_fc([_feature("north", [ring])], crs=crs), name="fields.geojson", grid=GRID)
    assert [z.name for z in zones] == ["north"]
    expected = shapely.Polygon(ZONE_A)
    assert zones[0].geometry.symmetric_difference(expected).area < 1e-4 * expected.area


@pytest.mark.parametrize(("doc", "match"), [
    (b"{not json", "is not valid JSON"),
    (json.dumps({"type": "Feature"}).encode(), "is not a GeoJSON FeatureCollection"),
    (_fc([_feature(None, [ZONE_A])], crs="EPSG:32633"), r"feature 0 has no `properties.name`"),
    (_fc([_feature("a", [ZONE_A]), _feature("a", [ZONE_B])], crs="EPSG:32633"),
     r"feature 1 \('a'\): the name is used twice"),
    (_fc([{"type": "Feature", "properties": {"name": "p"},
           "geometry": {"type": "Point", "coordinates": [500_010, 5_000_010]}}],
         crs="EPSG:32633"), r"feature 0 \('p'\) is a 'Point'"),
    (_fc([_feature("a", [ZONE_A])], crs="EPSG:999999"), "names an unknown CRS"),
])
def test_load_zones__errors_name_the_feature_and_fix(doc, match):
    with pytest.raises(ZonesError, match=rf"fields\.geojson: .*{match}"):
        load_zones(doc, name="fields.geojson", grid=GRID)


def test_zone_labels__pixel_centres_first_zone_wins():
    zones = load_zones(_fc([_feature("a", [ZONE_A]), _feature("b", [ZONE_B])], crs="EPSG:32633"),
                       name="fields.geojson", grid=GRID)
    labels = zone_labels(zones, grid=GRID, chunks=16)
    assert isinstance(labels.data, dsa.Array) and labels.dtype == np.int32
    assert labels.rio.crs == GRID.crs
    x, y = GRID.coords()
    expected = np.zeros(GRID.shape, dtype=np.int32)
    for i, zone in reversed(list(enumerate(zones))):  # first zone in file order wins
        inside = shapely.contains_xy(zone.geometry, *np.meshgrid(x, y))
        expected[inside] = i + 1
    got = labels.values
    assert (got == 1).sum() > 100 and (got == 2).sum() > 100
    overlap = shapely.contains_xy(zones[1].geometry, *np.meshgrid(x, y)) & (got == 1)
    assert overlap.any()  # the overlap went to zone 'a'
    np.testing.assert_array_equal(got, expected)
    centre = Point(x[20], y[40])
    assert (got[40, 20] == 1) == zones[0].geometry.contains(centre)


def test_zone_statistics__match_numpy_masks():
    zones = load_zones(_fc([_feature("a", [ZONE_A]), _feature("b", [ZONE_B])], crs="EPSG:32633"),
                       name="fields.geojson", grid=GRID)
    rng = np.random.default_rng(2)
    values = rng.uniform(-0.2, 0.9, GRID.shape).astype(np.float32)
    values[rng.random(GRID.shape) < 0.15] = np.nan
    ndvi = xr.DataArray(dsa.from_array(values, chunks=16), dims=("y", "x"))
    labels = zone_labels(zones, grid=GRID, chunks=16)
    lazy = lazy_stats(ndvi, lo=-1, hi=1, bins=2000, labels=labels, n_labels=len(zones))
    parts, label_values = dask.compute(lazy, labels)
    x, y = GRID.coords()
    xx, yy = np.meshgrid(x, y)
    claimed = np.zeros(GRID.shape, dtype=bool)
    for i, zone in enumerate(zones):
        mask = shapely.contains_xy(zone.geometry, xx, yy) & ~claimed
        claimed |= mask
        v = values[mask & np.isfinite(values)].astype(np.float64)
        stats = finalize_zone(parts, label=i + 1)
        assert stats["mean"] == pytest.approx(v.mean(), rel=1e-4)
        for key, q in (("p10", 10), ("p50", 50), ("p90", 90)):
            assert abs(stats[key] - np.percentile(v, q)) <= 0.005
        area = zone_area_m2(parts, label=i + 1, pixel_area_m2=GRID.pixel_area_m2)
        assert area == pytest.approx(mask.sum() * 0.25)
        if i == 0:  # pixel-centre area of the whole polygon ≈ its true area
            assert area == pytest.approx(zone.geometry.area, rel=0.05)
