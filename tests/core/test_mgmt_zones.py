"""Management zones on synthetic rasters with known structure, and their files read back."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import rasterio
import shapefile
import shapely
from rasterio.transform import from_origin
from shapely.geometry import box, shape

from pipeline.core import zone_outputs
from pipeline.core.mgmt_zones import (
    fisher_jenks,
    merge_small_parts,
    polygon_area_tolerance,
    zonate,
)

X0, Y0 = 500_000.0, 5_300_000.0
CRS = "EPSG:32633"


def _write(path: Path, values: np.ndarray, *, pixel: float = 1.0) -> str:
    h, w = values.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs=CRS, transform=from_origin(X0, Y0, pixel, pixel), nodata=float("nan"),
                       tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(values.astype(np.float32), 1)
    return str(path)


def _plateaus(h: int = 240, w: int = 300, noise: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.full((h, w), 0.8, np.float32)  # high vigour on the west
    values[:, w // 3: 2 * w // 3] = 0.2  # lowest in the middle
    values[:, 2 * w // 3:] = 0.5
    return values + rng.normal(0, noise, values.shape).astype(np.float32)


def test_fisher_jenks__splits_three_separated_groups_at_their_gaps() -> None:
    values = np.array([1.0, 1.1, 1.2, 5.0, 5.1, 9.0, 9.2, 9.3])
    breaks = fisher_jenks(values=values, weights=np.ones(8), classes=3)
    assert len(breaks) == 2 and 1.2 < breaks[0] < 5.0 and 5.1 < breaks[1] < 9.0


def test_fisher_jenks__weights_are_pixel_counts() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0])
    # equal weights: {0, 1} | {2, 3} (SSE 1.0 against 2.0 for either 1 | 3 split)
    assert fisher_jenks(values=values, weights=np.ones(4), classes=2) == [1.5]
    # 2 and 3 a thousand times as frequent: {0, 1, 2} | {3} (SSE ≈ 4.98 against 500.5)
    assert fisher_jenks(values=values, weights=np.array([1.0, 1, 1000, 1000]), classes=2) == [2.5]


def test_zonate__three_plateaus_give_three_classes_ordered_by_mean(tmp_path: Path) -> None:
    values = _plateaus()
    z = zonate(index_path=_write(tmp_path / "ndvi.tif", values), index="ndvi", classes=3,
               min_ha=0.05, canopy_ndvi=0.5, workdir=tmp_path / "w")
    with rasterio.open(z.stage) as src:
        classes = src.read(1)
    w = values.shape[1]
    # class 1 = lowest vigour (the middle third, 0.2), 3 = the west third (0.8)
    assert (classes[:, w // 3 + 5: 2 * w // 3 - 5] == 1).all()
    assert (classes[:, 2 * w // 3 + 5:] == 2).all()
    assert (classes[:, : w // 3 - 5] == 3).all()
    means = [c.ndvi_mean for c in z.class_stats]
    assert means == sorted(means)
    assert means == pytest.approx([0.2, 0.5, 0.8], abs=0.01)
    assert [c.zone_class for c in z.class_stats] == [1, 2, 3]
    assert {p.zone_class for p in z.parts} == {1, 2, 3}
    assert all(p.field is None for p in z.parts)


def test_zonate__nodata_is_class_zero_exactly_and_areas_are_conserved(tmp_path: Path) -> None:
    values = _plateaus()
    yy, xx = np.mgrid[0:240, 0:300]
    values[(yy - 120) ** 2 + (xx - 150) ** 2 > 110 ** 2] = np.nan  # a round field in a square grid
    values[30:33, 200:260] = np.nan  # a thin no-data streak
    z = zonate(index_path=_write(tmp_path / "ndvi.tif", values, pixel=0.5), index="ndvi",
               classes=3, min_ha=0.01, canopy_ndvi=0.5, workdir=tmp_path / "w")
    with rasterio.open(z.stage) as src:
        classes = src.read(1)
    assert np.array_equal(classes == 0, np.isnan(values))
    valid_m2 = np.isfinite(values).sum() * 0.25
    assert z.valid_area_m2 == pytest.approx(valid_m2)
    assert sum(c.area_m2 for c in z.class_stats) == pytest.approx(valid_m2, rel=1e-9)
    assert sum(p.area_m2 for p in z.parts) == pytest.approx(valid_m2, rel=0.01)
    assert sum(p.geometry.area for p in z.parts) == pytest.approx(valid_m2, rel=0.01)
    # the simplified polygons are still a coverage: no overlaps
    union = shapely.union_all([p.geometry for p in z.parts])
    assert union.area == pytest.approx(sum(p.geometry.area for p in z.parts), rel=1e-6)


def test_zonate__sliver_below_the_mmu_is_merged_into_its_largest_neighbour(tmp_path: Path) -> None:
    values = np.full((200, 200), 0.2, np.float32)
    values[:, 100:] = 0.8
    values[20:28, 20:80] = 0.8  # 8 × 60 px = 480 m² high-vigour sliver in the low half
    values[150:190, 130:190] = 0.2  # 40 × 60 = 2400 m² low patch in the high half: kept
    z = zonate(index_path=_write(tmp_path / "ndvi.tif", values), index="ndvi", classes=2,
               min_ha=0.05, canopy_ndvi=0.5, workdir=tmp_path / "w", factor=1)
    with rasterio.open(z.stage) as src:
        classes = src.read(1)
    assert (classes[20:28, 20:80] == 1).all()  # merged into the low area around it
    assert z.merged_parts >= 1
    assert (classes[155:185, 135:185] == 1).all()  # 0.24 ha ≥ 0.05 ha: stays
    low = [p for p in z.parts if p.zone_class == 1][0]
    assert len(low.geometry.geoms) == 2


def test_merge_small_parts__whole_field_smaller_than_the_mmu_stays() -> None:
    classes = np.ones((20, 20), np.uint8)
    classes[:, 10:] = 2
    fields = np.zeros((20, 20), np.int32)
    fields[2:4, 12:14] = 1  # a 4-pixel field, all class 2
    merged, count = merge_small_parts(classes=classes, fields=fields,
                                      weights=np.ones((20, 20)), min_weight=50)
    assert (merged[2:4, 12:14] == 2).all()
    # and a small part inside that field does merge within the field only
    classes[3, 13] = 1
    merged, count = merge_small_parts(classes=classes, fields=fields,
                                      weights=np.ones((20, 20)), min_weight=50)
    assert (merged[2:4, 12:14] == 2).all() and count == 1


def test_zonate__fields_split_polygons_and_give_canopy_cover(tmp_path: Path) -> None:
    # 4 × 4 pixels of 1 m; NDVI row by row: 0.1, 0.4, 0.6, 0.9; one pixel nodata
    values = np.repeat(np.array([0.1, 0.4, 0.6, 0.9], np.float32)[:, None], 4, axis=1)
    values[0, 0] = np.nan
    west = box(X0, Y0 - 4, X0 + 2, Y0)  # columns 0-1
    east = box(X0 + 2, Y0 - 4, X0 + 4, Y0)
    z = zonate(index_path=_write(tmp_path / "ndvi.tif", values), index="ndvi", classes=2,
               min_ha=0.0, canopy_ndvi=0.5, fields=[("west", west), ("east", east)],
               workdir=tmp_path / "w", factor=1)
    # west: 7 valid pixels, 4 with NDVI ≥ 0.5; east: 8 valid, 4 at or above
    assert z.canopy_cover == {"west": pytest.approx(4 / 7), "east": pytest.approx(0.5)}
    assert {(p.zone_class, p.field) for p in z.parts} == {(1, "west"), (2, "west"),
                                                          (1, "east"), (2, "east")}


def test_zonate__canopy_cover_counts_pixel_centres_inside_the_field(tmp_path: Path) -> None:
    values = np.full((10, 10), 0.3, np.float32)
    values[:, 5:] = 0.7
    # a field covering columns 3.4 .. 7.6: pixel centres 3.5..7.5 → columns 3-7, 2 low + 3 high
    field = box(X0 + 3.4, Y0 - 10, X0 + 7.6, Y0)
    z = zonate(index_path=_write(tmp_path / "ndvi.tif", values), index="ndvi", classes=2,
               min_ha=0.0, canopy_ndvi=0.5, fields=[("f", field)], workdir=tmp_path / "w",
               factor=1)
    assert z.canopy_cover["f"] == pytest.approx(3 / 5)


@pytest.fixture
def zoned(tmp_path: Path):
    values = _plateaus(noise=0.08, seed=3)
    path = _write(tmp_path / "ndvi.tif", values, pixel=0.25)
    fields = [("North", box(X0, Y0 - 30, X0 + 75, Y0)),
              ("South", box(X0, Y0 - 55, X0 + 60, Y0 - 30))]
    return zonate(index_path=path, index="ndvi", classes=3, min_ha=0.01, canopy_ndvi=0.5,
                  fields=fields, workdir=tmp_path / "w")


def _shapefile(data: bytes) -> shapefile.Reader:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == sorted(f"management_zones.{e}" for e in
                                                ("shp", "shx", "dbf", "prj", "cpg"))
    assert "UTM_Zone_33N" in archive.read("management_zones.prj").decode()
    return shapefile.Reader(shp=io.BytesIO(archive.read("management_zones.shp")),
                            shx=io.BytesIO(archive.read("management_zones.shx")),
                            dbf=io.BytesIO(archive.read("management_zones.dbf")), encoding="utf-8")


def test_zone_files__shapefile_reads_back_in_the_grid_crs(zoned) -> None:
    reader = _shapefile(zone_outputs.shapefile_zip(zoned, rates={1: 120.0, 2: 90.0, 3: 60.0}))
    assert [f.name for f in reader.fields[1:]] == ["class", "field", "area_ha", "ndvi_mean", "rate"]
    rows = [(r.as_dict(), shape(s.__geo_interface__))
            for r, s in zip(reader.records(), reader.shapes())]
    assert len(rows) == len(zoned.parts)
    for (record, geometry), part in zip(rows, zoned.parts):
        assert record["class"] == part.zone_class
        assert (record["field"] or None) == part.field
        assert record["rate"] == {1: 120.0, 2: 90.0, 3: 60.0}[part.zone_class]
        assert record["area_ha"] == pytest.approx(part.area_m2 / 1e4, abs=1e-4)
        assert geometry.area == pytest.approx(part.geometry.area, rel=1e-6)
    assert {r["field"] for r, _ in rows} == {"North", "South", ""}


def test_zone_files__geojson_reads_back_in_wgs84_with_null_rates(zoned) -> None:
    from pyproj import Transformer

    doc = json.loads(zone_outputs.geojson_bytes(zoned, rates=None))
    assert len(doc["features"]) == len(zoned.parts)
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    for feature, part in zip(doc["features"], zoned.parts):
        props = feature["properties"]
        assert props["rate"] is None and props["class"] == part.zone_class
        assert props["field"] == part.field
        geometry = shape(feature["geometry"])
        assert geometry.is_valid and -180 < geometry.centroid.x < 180
        back = shapely.transform(
            geometry, lambda c: np.column_stack(to_utm.transform(c[:, 0], c[:, 1])))
        assert back.area == pytest.approx(part.geometry.area, rel=1e-3)


def test_zone_files__isoxml_parses_back_with_the_rates(zoned) -> None:
    data = zone_outputs.prescription_zip(zoned, task="batch-1", product="Urea 46", unit="kg/ha",
                                         rates={1: 150.0, 2: 120.0, 3: 90.5}, software_version="1")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist() == ["TASKDATA/TASKDATA.XML"]
    root = ET.fromstring(archive.read("TASKDATA/TASKDATA.XML"))
    assert root.tag == "ISO11783_TaskData" and root.get("VersionMajor") == "4"
    (product,) = root.findall("PDT")
    assert product.get("B") == "Urea 46"
    (task,) = root.findall("TSK")
    zones = task.findall("TZN")
    assert [z.get("A") for z in zones] == ["1", "2", "3"]
    for tzn, rate in zip(zones, (150.0, 120.0, 90.5)):
        (pdv,) = tzn.findall("PDV")
        assert pdv.get("A") == "0006" and pdv.get("C") == product.get("A")
        assert int(pdv.get("B")) / 100 == pytest.approx(rate)  # mg/m² → kg/ha
        polygons = tzn.findall("PLN")
        assert polygons and all(p.get("A") == "2" for p in polygons)
        for pln in polygons:
            exterior = pln.find("LSG")
            assert exterior.get("A") == "1"
            points = [(float(p.get("D")), float(p.get("C"))) for p in exterior.findall("PNT")]
            assert len(points) >= 4 and points[0] == points[-1]
            assert all(47 < lat < 48 and 14 < lon < 16 for lon, lat in points)
    area_by_class = {}
    for tzn in zones:
        area_by_class[tzn.get("A")] = len(tzn.findall("PLN"))
    assert sum(area_by_class.values()) == sum(len(getattr(p.geometry, "geoms", [p.geometry]))
                                              for p in zoned.parts)


def test_zone_files__volume_units_use_ddi_1() -> None:
    from pipeline.core import isoxml

    zone = isoxml.TreatmentZone(code=1, rate=2.5, polygons=[("f", box(15, 47, 15.001, 47.001))])
    xml = isoxml.taskdata_xml(task="t", product="Herbicide", unit="L/ha", zones=[zone],
                              software_version="1")
    pdv = ET.fromstring(xml).find("TSK/TZN/PDV")
    assert pdv.get("A") == "0001" and pdv.get("B") == "250"  # mm³/m²


def test_zone_files__class_cog_is_paletted_with_nodata_zero(zoned, tmp_path: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    cog = zone_outputs.write_class_cog(zoned, tmp_path / "management_zones.tif")
    assert cog_validate(str(cog), quiet=True)[0]
    with rasterio.open(cog) as src:
        assert src.count == 1 and src.dtypes[0] == "uint8" and src.nodata == 0
        assert src.colorinterp[0] == rasterio.enums.ColorInterp.palette
        table = src.colormap(1)
        assert table[0][3] == 0 and all(table[c][3] == 255 for c in (1, 2, 3))
        assert set(np.unique(src.read(1))) <= {0, 1, 2, 3}
        assert src.crs.to_epsg() == 32633
    png = zone_outputs.class_map_png(cog, tmp_path / "mz.png", classes=3)
    assert png.stat().st_size > 0


def test_zonate__noisy_field_stays_within_the_vertex_and_size_budget(tmp_path: Path) -> None:
    """A worst case for vertex counts: a smooth gradient with strong noise, so class boundaries
    wander across the whole field."""
    rng = np.random.default_rng(11)
    h = w = 1024
    yy, xx = np.mgrid[0:h, 0:w]
    values = (0.2 + 0.6 * xx / w + 0.15 * np.sin(yy / 37.0) * np.cos(xx / 23.0)
              + rng.normal(0, 0.12, (h, w))).astype(np.float32)
    path = _write(tmp_path / "ndvi.tif", values, pixel=0.05)
    free = zonate(index_path=path, index="ndvi", classes=5, min_ha=0.0005, canopy_ndvi=0.5,
                  workdir=tmp_path / "free", vertex_budget=10**9)
    assert free.vertices > 1000  # the budget below has work to do
    z = zonate(index_path=path, index="ndvi", classes=5, min_ha=0.0005, canopy_ndvi=0.5,
               workdir=tmp_path / "w", vertex_budget=1000)
    assert z.vertices <= 1000 < free.vertices
    assert z.tolerance > free.tolerance
    total = sum(int(shapely.get_num_coordinates(p.geometry)) for p in z.parts)
    assert total == z.vertices
    geojson = zone_outputs.geojson_bytes(z, rates=None)
    assert len(geojson) < 1000 * 30 + 5000  # ~25 bytes per rounded vertex
    assert all(shape(f["geometry"]).is_valid for f in json.loads(geojson)["features"])
    union = shapely.union_all([p.geometry for p in z.parts])
    assert union.area == pytest.approx(sum(p.geometry.area for p in z.parts), rel=1e-6)


def test_analyse_management_zones__isoxml_only_with_a_prescription(tmp_path: Path) -> None:
    from pipeline.core.errors import ManifestError
    from pipeline.core.manifest import Prescription
    from pipeline.core.mgmt_analysis import analyse_management_zones

    path = _write(tmp_path / "ndvi.tif", _plateaus())
    common = dict(index_path=path, index="ndvi", classes=3, min_ha=0.05, canopy_ndvi=0.5,
                  task="b", software_version="1")
    plain = analyse_management_zones(workdir=tmp_path / "plain", **common)
    assert [f.object_name for f in plain.files] == [
        "management_zones.tif", "management_zones.geojson", "management_zones.shp.zip"]
    assert not (tmp_path / "plain" / "prescription_isoxml.zip").exists()
    assert all(f["properties"]["rate"] is None for f in json.loads(
        (tmp_path / "plain" / "management_zones.geojson").read_bytes())["features"])
    rx = Prescription(product="Urea", unit="kg/ha", rates={"1": 150, "2": 120, "3": 90})
    with_rx = analyse_management_zones(workdir=tmp_path / "rx", prescription=rx, **common)
    assert "prescription_isoxml.zip" in [f.object_name for f in with_rx.files]
    rates = {f["properties"]["class"]: f["properties"]["rate"] for f in json.loads(
        (tmp_path / "rx" / "management_zones.geojson").read_bytes())["features"]}
    assert rates == {1: 150.0, 2: 120.0, 3: 90.0}
    two = Prescription(product="Urea", unit="kg/ha", rates={"1": 150, "2": 120})
    with pytest.raises(ManifestError, match="IMAGERY_MZ_CLASSES"):
        analyse_management_zones(workdir=tmp_path / "two", prescription=two, **common)


def test_zonate__feature_areas_and_means_match_the_class_raster_per_field(zoned) -> None:
    """Fields aligned with the working cells: each feature is exactly the class raster's pixels of
    its class inside its field (or outside both)."""
    with rasterio.open(zoned.stage) as src:
        classes = src.read(1)
        transform = src.transform
    h, w = classes.shape
    rows, cols = np.mgrid[0:h, 0:w]
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    north = (x < X0 + 75) & (y > Y0 - 30)
    south = (x < X0 + 60) & (y <= Y0 - 30) & (y > Y0 - 55)
    where = {"North": north, "South": south, None: ~north & ~south}
    assert len(zoned.parts) >= 6
    for part in zoned.parts:
        pixels = (classes == part.zone_class) & where[part.field]
        assert part.area_m2 == pytest.approx(pixels.sum() * 0.0625), (part.zone_class, part.field)


def _parts(classes: np.ndarray, fields: np.ndarray) -> list[tuple[np.ndarray, int]]:
    from scipy import ndimage

    out = []
    for f in np.unique(fields):
        for c in np.unique(classes[(fields == f) & (classes > 0)]):
            labels, n = ndimage.label((fields == f) & (classes == c))
            out += [(labels == i, int(f)) for i in range(1, n + 1)]
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12))
def test_merge_small_parts__no_small_part_keeps_a_neighbour_in_its_field(seed, min_weight):
    rng = np.random.default_rng(seed)
    classes = rng.integers(1, 4, (14, 14)).astype(np.uint8)
    classes = np.kron(classes[:7, :7], np.ones((2, 2), np.uint8))  # parts of 4+ pixels
    classes[rng.random(classes.shape) < 0.05] = 0  # some no-data
    fields = np.zeros(classes.shape, np.int32)
    fields[:, 7:] = 1
    fields[10:, :5] = 2
    merged, _ = merge_small_parts(classes=classes, fields=fields, weights=np.ones(classes.shape),
                                  min_weight=min_weight)
    assert np.array_equal(merged == 0, classes == 0)  # no-data stays, data stays data
    for mask, field_id in _parts(merged, fields):
        if mask.sum() >= min_weight:
            continue
        grown = ndimage_dilation(mask) & ~mask & (fields == field_id) & (merged > 0)
        assert not grown.any(), "a small part kept a neighbour in its field"


def ndimage_dilation(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, structure=ndimage.generate_binary_structure(2, 1))


def test_analyse_management_zones__no_canopy_cover_without_ndvi(tmp_path: Path) -> None:
    from pipeline.core.mgmt_analysis import analyse_management_zones

    path = _write(tmp_path / "vari.tif", _plateaus() - 0.4)  # VARI-like values
    fields = json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "EPSG:32633"}}, "features": [{"type": "Feature", "properties": {"name": "F"},
                                              "geometry": shapely.geometry.mapping(
                                                  box(X0, Y0 - 100, X0 + 100, Y0))}]}).encode()
    common = dict(index_path=path, classes=3, min_ha=0.05, canopy_ndvi=0.1, task="b",
                  software_version="1", zones_geojson=fields)
    vari = analyse_management_zones(index="vari", workdir=tmp_path / "v", **common)
    assert vari.canopy_cover == {"F": None} and "defined on NDVI" in vari.notes[-1]
    ndvi = analyse_management_zones(index="ndvi", workdir=tmp_path / "n", **common)
    assert ndvi.canopy_cover["F"] is not None


def _ragged_field(seed: int = 5) -> np.ndarray:
    """Plateaus in a field whose west and east edges wander by pixels from row to row."""
    rng = np.random.default_rng(seed)
    values = _plateaus(h=480, w=600, seed=2)
    west = (60 + np.cumsum(rng.integers(-3, 4, 480))).clip(10, 200)
    east = (540 + np.cumsum(rng.integers(-3, 4, 480))).clip(400, 590)
    for r in range(480):
        values[r, :west[r]] = np.nan
        values[r, east[r]:] = np.nan
    values[200:203, 250:420] = np.nan  # a no-data streak across cells
    return values


@pytest.mark.parametrize("with_fields", [False, True])
def test_zonate__raster_features_and_polygons_agree_on_a_ragged_field(tmp_path: Path,
                                                                     with_fields: bool) -> None:
    """REVIEW m6: the pixels of cells under half valid (field edges, streaks) are classed in the
    raster; they belong to a feature of their class (and field), so per class the features' areas
    are the raster's exactly, and the polygons' area is within 1 % of it."""
    values = _ragged_field()
    fields = [("West", box(X0, Y0 - 240, X0 + 141.3, Y0)),  # not on a cell boundary
              ("East", box(X0 + 141.3, Y0 - 240, X0 + 300, Y0))] if with_fields else []
    z = zonate(index_path=_write(tmp_path / "ndvi.tif", values, pixel=0.5), index="ndvi",
               classes=3, min_ha=0.05, canopy_ndvi=0.5, fields=fields, workdir=tmp_path / "w")
    assert z.factor > 1
    with rasterio.open(z.stage) as src:
        classes = src.read(1)
    assert np.array_equal(classes == 0, np.isnan(values))
    for c in range(1, 4):
        raster_m2 = (classes == c).sum() * 0.25
        assert raster_m2 > 0
        assert z.class_stats[c - 1].area_m2 == pytest.approx(raster_m2, rel=1e-12)
        features = [p for p in z.parts if p.zone_class == c]
        assert sum(p.area_m2 for p in features) == pytest.approx(raster_m2, rel=1e-9), c
        assert sum(p.geometry.area for p in features) == pytest.approx(raster_m2, rel=0.01), c
        assert all(not p.geometry.is_empty for p in features)
    if with_fields:
        assert {p.field for p in z.parts} <= {"West", "East", None}


def test_polygon_area_tolerance__half_a_cell_along_the_outline_or_one_percent() -> None:
    cell = 2.0
    small = [box(0, 0, 10 * cell, 5 * cell), box(10 * cell, 0, 20 * cell, 5 * cell)]  # 20 x 5 cells
    outline = 2 * (20 + 5) * cell  # the union's outline; the shared edge is not counted
    area = 100 * cell**2
    assert polygon_area_tolerance(geometries=small, valid_area=area, cell=cell) == \
        pytest.approx(outline * cell / 2 / area)  # 0.25: 50 outline cells, half a cell each
    big = [box(0, 0, 1000 * cell, 1000 * cell)]  # 4000 outline cells of 1e6: 0.2 % < 1 %
    assert polygon_area_tolerance(geometries=big, valid_area=1e6 * cell**2, cell=cell) == 0.01
    assert polygon_area_tolerance(geometries=[], valid_area=0.0, cell=cell) == 0.01
