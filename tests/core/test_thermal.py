"""Thermal: units to °C, the hotspot rule, connected hotspots across block edges, thermal grid."""

from __future__ import annotations


import dask.array as dsa
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from pipeline.core.errors import ManifestError
from pipeline.core.grid import Grid
from pipeline.core.mosaic import ImageSource, mosaic
from pipeline.core.thermal import find_hotspots, hotspot_threshold, to_celsius
from tests.rasters import north_up, write_raster

GRID = Grid(crs=CRS.from_epsg(32633), transform=Affine(0.5, 0, 1000, 0, -0.5, 2000),
            width=100, height=80)


def _dn(values):
    x, y = GRID.coords()
    return xr.DataArray(dsa.from_array(np.asarray(values, dtype=np.float32), chunks=1),
                        dims=("y", "x"), coords={"y": y[:1], "x": x[:len(values[0])]})


@pytest.mark.parametrize(("unit", "scale", "offset", "dn", "celsius"), [
    (None, None, None, 25.0, 25.0),
    ("celsius", None, None, -3.5, -3.5),
    ("kelvin", None, None, 300.0, 26.85),
    ("centikelvin", None, None, 30015.0, 27.0),
    (None, 0.04, -273.15, 7500.0, 26.85),  # FLIR Duo Pro R / DJI XT2 TIFF
    ("kelvin", 0.04, -273.15, 7500.0, 26.85),  # explicit scale/offset win over the unit
])
def test_to_celsius__units_and_scale(unit, scale, offset, dn, celsius):
    out = to_celsius(_dn([[dn, np.nan]]), unit=unit, scale=scale, offset=offset)
    assert isinstance(out.data, dsa.Array) and out.dtype == np.float32
    values = out.values
    assert values[0, 0] == pytest.approx(celsius, abs=1e-4)
    assert np.isnan(values[0, 1])
    assert out.attrs["units"] == "degC" and "x" in out.coords


def test_to_celsius__unknown_unit_names_the_fix():
    with pytest.raises(ManifestError, match="thermal_unit 'fahrenheit'.*thermal_scale"):
        to_celsius(_dn([[1.0]]), unit="fahrenheit", scale=None, offset=None)


def test_to_celsius__real_flir_frame_is_plausible(real_data):
    with rasterio.open(real_data / "flir_duo_pro_r_radiometric.tiff") as ds:
        dn = ds.read(1)
    da = xr.DataArray(dsa.from_array(dn, chunks=128), dims=("y", "x"))
    celsius = to_celsius(da, unit=None, scale=0.04, offset=-273.15).values
    np.testing.assert_allclose(celsius, dn.astype(np.float64) * 0.04 - 273.15, atol=1e-4)
    assert -40 < np.nanmin(celsius) < np.nanmax(celsius) < 150


def test_hotspot_threshold__wider_margin_applies():
    assert hotspot_threshold({"mean": 30.0, "std": 0.5, "p90": 31.0}) == pytest.approx(33.0)
    assert hotspot_threshold({"mean": 30.0, "std": 3.0, "p90": 33.0}) == pytest.approx(36.0)
    assert np.isnan(hotspot_threshold({"mean": None, "std": None, "p90": None}))


def test_find_hotspots__two_warm_squares_across_block_edges():
    values = np.full((80, 100), 25.0, dtype=np.float32)
    values[10:30, 20:40] = 35.0  # 20 x 20 px = 100 m², centre (1015, 1990)
    values[15, 25] = 38.5
    values[50:70, 60:76] = 33.0  # 20 x 16 px = 80 m², centre (1034, 1970)
    values[70, 76] = 33.0  # diagonal neighbour (8-connectivity): same region
    values[67, 90] = values[68, 91] = 36.0  # diagonal pair across a block corner: 0.5 m²
    values[45, 5] = 40.0  # single hot pixel: 0.25 m², below min_area_m2
    values[0, :] = np.nan
    celsius = xr.DataArray(dsa.from_array(values, chunks=(17, 13)), dims=("y", "x"))
    spots = find_hotspots(celsius, threshold=30.0, grid=GRID, min_area_m2=1.0)
    assert len(spots) == 2
    first, second = spots
    assert first.centroid == pytest.approx((1015.0, 1990.0))
    assert first.area_m2 == pytest.approx(100.0) and first.max_c == pytest.approx(38.5)
    cols = np.concatenate([np.tile(np.arange(60, 76), 20), [76]]) + 0.5
    rows = np.concatenate([np.repeat(np.arange(50, 70), 16), [70]]) + 0.5
    assert second.centroid == pytest.approx((1000 + 0.5 * cols.mean(), 2000 - 0.5 * rows.mean()))
    assert second.area_m2 == pytest.approx(321 * 0.25) and second.max_c == pytest.approx(33.0)
    assert first.as_dict() == {"centroid": [1015.0, 1990.0], "area_m2": 100.0, "max_c": 38.5}
    corner = find_hotspots(celsius, threshold=30.0, grid=GRID, min_area_m2=0.4)
    assert [s.area_m2 for s in corner] == [100.0, 0.5, pytest.approx(80.25)]
    assert corner[1].centroid == pytest.approx((1000 + 0.5 * 91.0, 2000 - 0.5 * 68.0))
    assert find_hotspots(celsius, threshold=50.0, grid=GRID) == []


def test_find_hotspots__same_result_for_any_chunking():
    rng = np.random.default_rng(11)
    values = rng.normal(28, 2, (60, 70)).astype(np.float32)
    reference = find_hotspots(xr.DataArray(values, dims=("y", "x")), threshold=31.0,
                              grid=GRID, min_area_m2=0.0)
    for chunks in ((7, 9), (60, 5), (1, 70)):
        chunked = xr.DataArray(dsa.from_array(values, chunks=chunks), dims=("y", "x"))
        spots = find_hotspots(chunked, threshold=31.0, grid=GRID, min_area_m2=0.0)
        key = sorted((round(s.area_m2, 6), s.max_c, round(s.centroid[0], 6)) for s in spots)
        assert key == sorted((round(s.area_m2, 6), s.max_c, round(s.centroid[0], 6))
                             for s in reference)


def test_mosaic__thermal_keeps_its_own_grid(tmp_path):
    write_raster(tmp_path / "ms.tif", np.ones((2, 40, 40), np.uint16),
                 transform=north_up(left=500_000, top=5_000_000, res=0.05))
    dn_a = np.full((10, 12), 30_015, np.uint16)
    dn_b = np.full((10, 12), 30_515, np.uint16)
    dn_b[0, 0] = 0
    write_raster(tmp_path / "t1.tif", dn_a, transform=north_up(left=500_000, top=5_000_000,
                                                                 res=0.15), nodata=0)
    write_raster(tmp_path / "t2.tif", dn_b, transform=north_up(left=500_001.2, top=5_000_000,
                                                                 res=0.15), nodata=0)
    m = mosaic(sources=[ImageSource("ms.tif", str(tmp_path / "ms.tif"), ("red", "nir")),
                        ImageSource("t1.tif", str(tmp_path / "t1.tif"), ("thermal",)),
                        ImageSource("t2.tif", str(tmp_path / "t2.tif"), ("thermal",))],
               reflectance_scale=1.0, chunks=8)
    assert m.grid.res == (0.05, 0.05) and m.thermal_grid.res == pytest.approx((0.15, 0.15))
    assert (m.thermal_grid.width, m.thermal_grid.height) == (20, 10)
    celsius = to_celsius(m.thermal_dn, unit="centikelvin", scale=None, offset=None)
    assert isinstance(celsius.data, dsa.Array)
    values = celsius.values
    np.testing.assert_allclose(values[:, :8], 27.0, atol=1e-4)  # t1 only
    np.testing.assert_allclose(values[:, 12:], 32.0, atol=1e-4)  # t2 only
    np.testing.assert_allclose(values[:, 8:12], 27.0, atol=1e-4)  # overlap: t1 first
