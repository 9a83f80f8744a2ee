"""Edge inputs of DESIGN.md §2 (issue 13): rotated and flipped tiles, float nodata sentinels.

Each test builds its own tiny batch; expectations are analytic (exact values, or bounds that only
the right resampling kernel can meet).
"""

from __future__ import annotations

import io
import json
import math

import dask
import numpy as np
import pytest
from affine import Affine

from pipeline.core.errors import ManifestError, NoOverlap, ZonesError
from pipeline.core.grid import batch_grid
from pipeline.core.manifest import parse_manifest
from pipeline.core.mosaic import ImageSource, count_out_of_range, mosaic
from pipeline.core.thermal_check import ImplausibleThermal, sample_thermal
from pipeline.core.validation import validate_images
from tests.rasters import north_up, write_raster

X0, Y0 = 500_000.0, 5_000_000.0
RES = 0.5

# linear parts (p, q, s, t): x = p·col + q·row, y = s·col + t·row in pixels, y up. North-up is
# (1, 0, 0, -1); these are it turned by 90°, 180°, 270° (counter-clockwise) and flipped.
ORIENTATIONS = {
    "rot90": (0, 1, 1, 0),
    "rot180": (-1, 0, 0, 1),
    "rot270": (0, -1, -1, 0),
    "south_up": (1, 0, 0, 1),
    "east_west_flip": (-1, 0, 0, -1),
    "rot90_flipped": (0, -1, 1, 0),
    "rot270_flipped": (0, 1, -1, 0),
}


def _oriented_tile(values: np.ndarray, *, linear: tuple[int, int, int, int], col0: int, row0: int,
                   grid: Affine) -> tuple[np.ndarray, Affine]:
    """`values` (grid orientation, upper-left grid pixel (col0, row0)) stored in a file whose
    geotransform has the linear part `linear`, covering exactly those grid pixels."""
    p, q, s, t = linear
    h, w = values.shape
    file_w, file_h = (w, h) if p else (h, w)
    corners = [(p * c + q * r, s * c + t * r) for c in (0, file_w) for r in (0, file_h)]
    x_origin = grid.c + col0 * RES - RES * min(x for x, _ in corners)
    y_origin = grid.f - row0 * RES - RES * max(y for _, y in corners)
    transform = Affine(p * RES, q * RES, x_origin, s * RES, t * RES, y_origin)
    tc, tr = np.meshgrid(np.arange(file_w) + 0.5, np.arange(file_h) + 0.5)
    gc, gr = ~grid @ (transform @ (tc, tr))  # each file pixel centre's grid pixel
    return values[np.floor(gr).astype(int) - row0, np.floor(gc).astype(int) - col0], transform


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_mosaic__tile_rotated_by_90_or_flipped_on_the_grid_arrives_exact(tmp_path, orientation):
    rng = np.random.default_rng(13)
    grid_t = north_up(left=X0, top=Y0, res=RES)
    anchor = rng.uniform(0.05, 0.6, (2, 30, 40)).astype(np.float32)  # red, nir; defines the grid
    write_raster(tmp_path / "anchor.tif", anchor, transform=grid_t)
    # the turned tile covers grid rows 10..33, cols 25..114, beyond the anchor on two sides; an
    # oblong tile, since GDAL's warper derives its kernel from oblong windows' side ratios
    truth = rng.uniform(0.05, 0.6, (2, 24, 90)).astype(np.float32)
    bands = [_oriented_tile(truth[i], linear=ORIENTATIONS[orientation], col0=25, row0=10,
                            grid=grid_t) for i in (0, 1)]
    write_raster(tmp_path / "turned.tif", np.stack([b[0] for b in bands]), transform=bands[0][1])
    sources = [ImageSource("turned.tif", str(tmp_path / "turned.tif"), ("red", "nir")),
               ImageSource("anchor.tif", str(tmp_path / "anchor.tif"), ("red", "nir"))]
    m = mosaic(sources=list(reversed(sources)), reflectance_scale=1.0, chunks=13)
    assert m.grid.transform == grid_t and m.grid.shape == (34, 115)
    expected = np.full((2, 34, 115), np.nan, dtype=np.float32)
    expected[:, 10:34, 25:115] = truth  # the turned tile, where the anchor has no data
    expected[:, :30, :40] = anchor  # first valid value wins: the anchor comes first
    red, nir = dask.compute(m.bands["red"].data, m.bands["nir"].data)
    np.testing.assert_array_equal(red, expected[0])
    np.testing.assert_array_equal(nir, expected[1])
    window = m.window_reader().read((0, 34), (0, 115))  # the path the index pass reads
    np.testing.assert_array_equal(window["nir"], expected[1])
    # the turned tile first: its values win everywhere it covers, still untouched
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=16)
    red = m.bands["red"].values
    np.testing.assert_array_equal(red[10:34, 25:115], truth[0])


@pytest.mark.parametrize("degrees", [30, 89])
def test_mosaic__other_rotation_at_grid_resolution_blends_only_the_nearest_2x2(tmp_path, degrees):
    """A tile turned by another angle at the grid's resolution: BILINEAR with the warper's scale
    at 1 blends the 2 × 2 source pixels around each grid pixel centre, so every value lies within
    their range. Left to itself GDAL derives the scale from the source and destination windows,
    which a rotation makes unequal, and blends a wider neighbourhood (values drift to the mean)."""
    rng = np.random.default_rng(7)
    write_raster(tmp_path / "anchor.tif", np.full((2, 60, 120), 0.3, np.float32),
                 transform=north_up(left=X0, top=Y0, res=RES), nodata=None)
    src = rng.uniform(0.05, 0.95, (200, 500)).astype(np.float32)
    angle = math.radians(degrees)
    turned = (Affine.translation(X0 + 15.0, Y0 - 2.0)
              @ Affine(RES * math.cos(angle), RES * math.sin(angle), 0,
                       RES * math.sin(angle), -RES * math.cos(angle), 0))
    write_raster(tmp_path / "turned.tif", np.stack([src, src]), transform=turned)
    sources = [ImageSource("anchor.tif", str(tmp_path / "anchor.tif"), ("red", "nir")),
               ImageSource("turned.tif", str(tmp_path / "turned.tif"), ("red", "nir"))]
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=1024)
    x, y = m.grid.coords()
    sc, sr = ~turned @ np.meshgrid(x, y)  # grid pixel centres in source pixels
    i, j = np.floor(sr - 0.5).astype(int), np.floor(sc - 0.5).astype(int)  # upper-left of 2 × 2
    inside = (i >= 0) & (i < src.shape[0] - 1) & (j >= 0) & (j < src.shape[1] - 1)
    c0, r0 = (int(round(v)) for v in ~m.grid.transform @ (X0, Y0))
    inside[r0:r0 + 60, c0:c0 + 120] = False  # the anchor's pixels come first
    i, j = i[inside], j[inside]
    near = np.stack([src[i, j], src[i + 1, j], src[i, j + 1], src[i + 1, j + 1]])
    assert inside.sum() > 50_000
    for values in (m.bands["red"].values,
                   m.window_reader().read((0, m.grid.height), (0, m.grid.width))["red"]):
        v = values[inside]
        assert np.all((v >= near.min(axis=0) - 1e-5) & (v <= near.max(axis=0) + 1e-5))


@pytest.mark.parametrize("sentinel", [-3.4e38, 3e38, -9999.0, np.inf])
def test_mosaic__undeclared_float_sentinel_is_nodata_and_counted(tmp_path, sentinel):
    red = np.full((20, 20), 0.1, np.float32)
    nir = np.full((20, 20), 0.5, np.float32)
    red[2:5, 3:7] = sentinel  # 12 pixels: the exporter's nodata, not declared in the file
    nir[2:5, 3:7] = sentinel
    nir[10, 10] = np.nan  # NaN is the usual float nodata: masked, never counted
    write_raster(tmp_path / "float.tif", np.stack([red, nir]),
                 transform=north_up(left=X0, top=Y0, res=RES))
    sources = [ImageSource("float.tif", str(tmp_path / "float.tif"), ("red", "nir"))]
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=8)
    ndvi = ((m.bands["nir"] - m.bands["red"]) / (m.bands["nir"] + m.bands["red"])).values
    assert np.isnan(ndvi[2:5, 3:7]).all() and np.isnan(ndvi[10, 10])
    assert np.count_nonzero(np.isfinite(ndvi)) == 400 - 13
    np.testing.assert_allclose(ndvi[np.isfinite(ndvi)], 0.4 / 0.6, rtol=1e-6)
    (counts,) = dask.compute(count_out_of_range(sources=sources, reflectance_scale=1.0, chunks=8))
    assert counts == {"float.tif": 24}  # 12 pixels × 2 bands


def test_count_out_of_range__integers_within_range_are_not_read_and_scale_applies(tmp_path):
    dn = np.full((2, 10, 10), 5000, np.uint16)
    write_raster(tmp_path / "u16.tif", dn, transform=north_up(left=X0, top=Y0, res=RES))
    ints = [ImageSource("u16.tif", str(tmp_path / "u16.tif"), ("red", "nir"))]
    (counts,) = dask.compute(count_out_of_range(sources=ints, reflectance_scale=1e-4))
    assert counts == {"u16.tif": 0}
    # DN taken as reflectance (no scale given): 5000 is far outside [-1, 10], every value counts
    (counts,) = dask.compute(count_out_of_range(sources=ints, reflectance_scale=1.0))
    assert counts == {"u16.tif": 200}
    assert np.isnan(mosaic(sources=ints, reflectance_scale=1.0).bands["red"].values).all()
    np.testing.assert_allclose(mosaic(sources=ints, reflectance_scale=1e-4).bands["red"].values,
                               0.5, rtol=1e-6)


def _ortho(path, *, left: float, size: int = 20, bands: int = 2):
    return write_raster(path, np.full((bands, size, size), 0.3, np.float32),
                        transform=north_up(left=left, top=Y0, res=RES))


@pytest.mark.parametrize("order", [("a", "b", "far"), ("far", "a", "b"), ("a", "far", "b"),
                                   ("a", "far")])
def test_batch_grid__no_overlap_names_the_tile_outside_the_others(tmp_path, order):
    lefts = {"a": X0, "b": X0 + 5.0, "far": X0 + 500_000.0}  # a and b overlap; far is 500 km east
    sources = [ImageSource(f"{n}.tif", str(_ortho(tmp_path / f"{n}.tif", left=lefts[n])),
                           ("red", "nir")) for n in order]
    with pytest.raises(NoOverlap, match=r"^far\.tif: covers .* does not overlap") as caught:
        batch_grid(sources)
    assert caught.value.file == "far.tif"
    assert "a.tif" not in str(caught.value) and "b.tif" not in str(caught.value)


def test_validate_images__thermal_frame_far_from_the_orthomosaic_is_named(tmp_path):
    _ortho(tmp_path / "ortho.tif", left=X0)
    write_raster(tmp_path / "thermal.tif", np.full((10, 10), 30.0, np.float32),
                 transform=north_up(left=X0 + 500_000.0, top=Y0, res=1.0))
    manifest = parse_manifest(json.dumps({
        "schema_version": 1, "batch_id": "b1",
        "images": [{"path": "ortho.tif", "bands": ["red", "nir"]},
                   {"path": "thermal.tif", "bands": ["thermal"]}]}).encode(),
        name="b1/manifest.json", batch_id="b1")
    with pytest.raises(NoOverlap, match=r"^thermal\.tif: covers"):
        validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p), gdal_options={})


def _thermal_batch(tmp_path, dn: np.ndarray, *, entry: dict, nodata=None, **write):
    write_raster(tmp_path / "thermal.tif", dn, transform=north_up(left=X0, top=Y0, res=1.0),
                 nodata=nodata, **write)
    manifest = parse_manifest(json.dumps({
        "schema_version": 1, "batch_id": "b1",
        "images": [{"path": "thermal.tif", "bands": ["thermal"], **entry}]}).encode(),
        name="b1/manifest.json", batch_id="b1")
    return manifest


@pytest.mark.parametrize(("dn", "entry", "looks_like"), [
    (0, {"thermal_unit": "centikelvin"}, 'thermal_unit "celsius"'),  # radiometric DN all 0
    (30_015, {}, 'thermal_unit "centikelvin"'),  # centikelvin DN taken as °C
    (300.15, {"thermal_unit": "celsius"}, 'thermal_unit "kelvin"'),
    (7_579, {"thermal_unit": "kelvin"}, "thermal_scale 0.04 and thermal_offset -273.15"),
    (-5_000, {}, "no usual unit fits"),
])
def test_validate_images__implausible_thermal_is_refused_naming_file_and_unit(tmp_path, dn, entry,
                                                                               looks_like):
    values = np.full((40, 50), dn, np.float32)
    values[:5] = np.nan  # nodata is left out of the sample
    manifest = _thermal_batch(tmp_path, values, entry=entry)
    with pytest.raises(ImplausibleThermal, match=r"^thermal\.tif: converted with ") as caught:
        validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p), gdal_options={})
    assert "100% of its sampled pixels lie outside -40…150 °C" in str(caught.value)
    assert looks_like in str(caught.value)


def test_validate_images__plausible_thermal_passes_with_a_few_outliers(tmp_path):
    values = np.full((40, 50), 30_015, np.uint16)  # 27 °C in centikelvin
    values[:10] = 50_000  # 226 °C: a quarter of the frame (a hot chimney), still mostly plausible
    values[10:12] = 0  # declared nodata: not sampled
    manifest = _thermal_batch(tmp_path, values, entry={"thermal_unit": "centikelvin"}, nodata=0)
    batch = validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p), gdal_options={})
    assert batch.thermal_calibration == ("centikelvin", None, None)


def test_sample_thermal__large_image_without_overviews_reads_a_lattice_of_windows(tmp_path):
    values = np.full((2100, 2000), 30_015, np.uint16)
    manifest = _thermal_batch(tmp_path, values, entry={}, tiled=True, blocksize=256)
    source = ImageSource("thermal.tif", str(tmp_path / "thermal.tif"), ("thermal",))
    sample = sample_thermal(source)
    assert sample.how == "windows" and sample.dn.size == 64 * 32 * 32
    with pytest.raises(ImplausibleThermal, match='look like thermal_unit "centikelvin"'):
        validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p), gdal_options={})


def _zones_doc(zones: dict[str, tuple[float, float, float, float]]) -> bytes:
    features = [{"type": "Feature", "properties": {"name": name},
                 "geometry": {"type": "Polygon", "coordinates": [[
                     [x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
                for name, (x0, y0, x1, y1) in zones.items()]
    return json.dumps({"type": "FeatureCollection", "features": features,
                       "crs": {"type": "name", "properties": {"name": "EPSG:32633"}}}).encode()


def test_batch__fields_not_flown_kept_and_masked_values_on_the_first_page(tmp_path):
    """A float orthomosaic with an undeclared -3.4e38 sentinel and a NaN gap, and a field list
    with one field over the imagery, one under its gap and one 2 km away: the batch is processed,
    the sentinel pixels are nodata (NDVI exact elsewhere), counted per file, and stated on the
    report's first page; the two fields without imagery stay in summary.json with area 0 and
    null statistics, and are named on the first page."""
    from datetime import UTC, datetime

    from pypdf import PdfReader

    from pipeline.core.analysis import analyse_indices
    from pipeline.core.report_build import build_context, build_summary
    from pipeline.core.report_pdf import render_report

    red = np.full((40, 40), 0.1, np.float32)
    nir = np.full((40, 40), 0.5, np.float32)
    red[:4, :5] = nir[:4, :5] = -3.4e38  # 20 pixels of the exporter's nodata, undeclared
    red[20:, 20:] = nir[20:, 20:] = np.nan  # a gap: the lower right quarter
    write_raster(tmp_path / "ortho.tif", np.stack([red, nir]),
                 transform=north_up(left=X0, top=Y0, res=RES))
    zones = _zones_doc({"flown": (X0 + 1, Y0 - 9, X0 + 9, Y0 - 1),  # 16 × 16 px, 4 × 5 sentinels
                        "gap": (X0 + 12, Y0 - 18, X0 + 18, Y0 - 12),  # under the NaN quarter
                        "far": (X0 + 2_000, Y0 - 10, X0 + 2_010, Y0)})  # 2 km away
    (tmp_path / "fields.geojson").write_bytes(zones)
    manifest = parse_manifest(json.dumps({
        "schema_version": 1, "batch_id": "b1", "zones": "fields.geojson",
        "images": [{"path": "ortho.tif", "bands": ["red", "nir"]}]}).encode(),
        name="b1/manifest.json", batch_id="b1")
    batch = validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p),
                            gdal_options={}, zones_geojson=zones)
    work = tmp_path / "work"
    work.mkdir()
    result = analyse_indices(sources=batch.optical_sources, reflectance_scale=1.0, workdir=work,
                             zones_geojson=zones, zones_name="fields.geojson", chunks=16)
    assert result.masked_values == {"ortho.tif": 40}  # 20 pixels × 2 bands
    ndvi = result.indices["ndvi"].stats
    assert ndvi["mean"] == pytest.approx(0.4 / 0.6, rel=1e-6) and ndvi["min"] > 0.6
    assert ndvi["valid_fraction"] == pytest.approx((1600 - 400 - 20) / 1600)
    summary = build_summary(batch=batch, indices=result, thermal=None, artifacts={},
                            generated_at=datetime(2026, 6, 14, tzinfo=UTC), code_version="test")
    by_name = {z["name"]: z for z in json.loads(summary.to_json())["zones"]}
    assert by_name["flown"]["area_m2"] == pytest.approx(16 * 16 * RES * RES)
    assert by_name["flown"]["indices"]["ndvi"]["mean"] == pytest.approx(0.4 / 0.6, rel=1e-6)
    for name in ("gap", "far"):
        assert by_name[name]["area_m2"] == 0
        ndvi = dict(by_name[name]["indices"]["ndvi"])
        assert [c["fraction"] for c in ndvi.pop("classes")] == [None] * 4
        assert ndvi == {"mean": None, "p10": None, "p50": None, "p90": None}
    context = build_context(batch=batch, indices=result, thermal=None, maps={})
    pdf = render_report(summary=summary, context=context)
    first = " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert "ortho.tif 40 values" in first
    assert "Not flown in this batch (2 without imagery" in first and "gap, far" in first


_GOOD = {"schema_version": 1, "batch_id": "b1",
         "images": [{"path": "a.tif", "bands": ["red", "nir"]}]}


@pytest.mark.parametrize(("data", "match"), [
    (json.dumps(_GOOD).encode()[:-7], "is not valid JSON"),  # truncated upload
    (json.dumps({**_GOOD, "images": "a.tif"}).encode(), "`images`"),  # wrong type
    (json.dumps({**_GOOD, "images": _GOOD["images"] * 2}).encode(), "'a.tif' is listed twice"),
    (json.dumps({**_GOOD, "batch_id": "b2"}).encode(), "`batch_id` is 'b2' but .* prefix 'b1'"),
])
def test_parse_manifest__held_out_defects_refused_naming_the_manifest(data, match):
    with pytest.raises(ManifestError, match=rf"^b1/manifest\.json: .*{match}"):
        parse_manifest(data, name="b1/manifest.json", batch_id="b1")


def test_parse_manifest__utf8_bom_is_read_as_the_same_manifest():
    data = json.dumps({**_GOOD, "reflectance_scale": 0.0001}).encode()
    plain = parse_manifest(data, name="b1/manifest.json", batch_id="b1")
    assert parse_manifest(b"\xef\xbb\xbf" + data, name="b1/manifest.json", batch_id="b1") == plain


@pytest.mark.parametrize(("zones", "match"), [
    (b'{"type": "FeatureCollection", "features": [', "is not valid JSON"),
    (_zones_doc({"a": (X0, Y0 - 5, X0 + 5, Y0)}).replace(b'{"name": "a"}', b"{}"),
     "feature 0 has no `properties.name`"),
])
def test_validate_images__broken_zones_or_nameless_zone_refused_before_any_pixel(tmp_path, zones,
                                                                                 match):
    _ortho(tmp_path / "a.tif", left=X0)
    manifest = parse_manifest(json.dumps({**_GOOD, "zones": "fields.geojson"}).encode(),
                              name="b1/manifest.json", batch_id="b1")
    with pytest.raises(ZonesError, match=rf"^fields\.geojson: {match}"):
        validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p), gdal_options={},
                        zones_geojson=zones)


def test_mosaic__one_pixel_tile_is_placed_exactly(tmp_path):
    _ortho(tmp_path / "a.tif", left=X0, size=6)
    write_raster(tmp_path / "dot.tif", np.array([[[0.2]], [[0.7]]], np.float32),
                 transform=north_up(left=X0 + 6 * RES, top=Y0 - 2 * RES, res=RES))
    sources = [ImageSource("a.tif", str(tmp_path / "a.tif"), ("red", "nir")),
               ImageSource("dot.tif", str(tmp_path / "dot.tif"), ("red", "nir"))]
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=4)
    assert m.grid.shape == (6, 7)
    nir = m.bands["nir"].values
    assert nir[2, 6] == np.float32(0.7) and np.isnan(nir[[0, 1, 3, 4, 5], 6]).all()
