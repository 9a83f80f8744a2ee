"""Batch grid and lazy band-wise mosaic: synthetic tiles with analytic expectations and real files."""

from __future__ import annotations

import pickle

import dask
import dask.array as dsa
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from pipeline.core.errors import MissingCRS, NoOverlap, RasterTooLarge, UnreadableImage
from pipeline.core.grid import Grid, batch_grid
from pipeline.core.mosaic import ImageSource, mosaic, open_header
from pipeline.core.stats import finalize, lazy_stats
from tests.rasters import north_up, write_raster

X0, Y0 = 500_000.0, 5_000_000.0


def _ndvi(bands):
    nir, red = bands["nir"], bands["red"]
    return (nir - red) / (nir + red)


def _assert_stats(summary, values, *, grid_pixels, pixel_area):
    """summary (stats.finalize) equals numpy over the same pixels within DESIGN.md accuracy."""
    v = values[np.isfinite(values)].astype(np.float64)
    for key, exact in (("mean", v.mean()), ("std", v.std()), ("min", v.min()), ("max", v.max())):
        assert summary[key] == pytest.approx(exact, rel=1e-4, abs=1e-9), key
    for key, q in (("p10", 10), ("p50", 50), ("p90", 90)):
        assert abs(summary[key] - np.percentile(v, q)) <= 0.005, key
    assert summary["valid_fraction"] == pytest.approx(v.size / grid_pixels, rel=1e-3)
    assert summary["valid_area_m2"] == pytest.approx(v.size * pixel_area, rel=1e-3)


def _ndvi_summary(m):
    ndvi = _ndvi(m.bands)
    assert isinstance(ndvi.data, dsa.Array)
    lazy = lazy_stats(ndvi, lo=-1.0, hi=1.0, bins=2000)
    parts, values = dask.compute(lazy, ndvi)
    return finalize(parts, grid_pixels=m.grid.width * m.grid.height,
                    pixel_area_m2=m.grid.pixel_area_m2), values.values


def test_mosaic__multi_tile_first_valid_wins_and_union_extent(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(1, 10_000, (2, 40, 60)).astype(np.uint16)
    a[:, 5:8, 5:9] = 0  # nodata value → hole filled by tile b where b covers it (it does not)
    b = rng.integers(1, 10_000, (2, 50, 30)).astype(np.uint16)
    write_raster(tmp_path / "a.tif", a, transform=north_up(left=X0, top=Y0, res=0.5), nodata=0)
    write_raster(tmp_path / "b.tif", b, transform=north_up(left=X0 + 20, top=Y0 - 10, res=0.5),
                 nodata=0)
    sources = [ImageSource("a.tif", str(tmp_path / "a.tif"), ("red", "nir")),
               ImageSource("b.tif", str(tmp_path / "b.tif"), ("red", "nir"))]
    m = mosaic(sources=sources, reflectance_scale=1e-4, chunks=16)

    assert m.grid.bounds == (X0, Y0 - 35, X0 + 35, Y0)  # union of both tiles
    assert (m.grid.width, m.grid.height) == (70, 70)
    assert all(isinstance(band.data, dsa.Array) for band in m.bands.values())
    expected = np.full((2, 70, 70), np.nan, dtype=np.float32)
    expected[:, 20:70, 40:70] = b * np.float32(1e-4)
    a_f = np.where(a == 0, np.nan, a * np.float32(1e-4)).astype(np.float32)
    expected[:, 0:40, 0:60] = np.where(np.isnan(a_f), expected[:, 0:40, 0:60], a_f)  # a first
    red, nir = dask.compute(m.bands["red"], m.bands["nir"])
    np.testing.assert_array_equal(red.values, expected[0])
    np.testing.assert_array_equal(nir.values, expected[1])
    assert red.rio.crs == m.grid.crs and red.rio.transform() == m.grid.transform
    summary, ndvi = _ndvi_summary(m)
    exp_ndvi = (expected[1] - expected[0]) / (expected[1] + expected[0])
    np.testing.assert_allclose(ndvi, exp_ndvi, rtol=1e-6)
    _assert_stats(summary, exp_ndvi, grid_pixels=70 * 70, pixel_area=0.25)


def test_mosaic__one_file_per_band_nan_and_alpha_nodata(tmp_path):
    red = np.full((30, 30), 0.1, dtype=np.float32)
    red[0:3] = np.nan  # NaN nodata
    nir = np.stack([np.full((30, 30), 0.5, np.float32), np.full((30, 30), 255, np.float32)])
    nir[1, :, 0:4] = 0  # alpha 0 → NaN
    t = north_up(left=X0, top=Y0, res=0.1)
    write_raster(tmp_path / "red.tif", red, transform=t)
    write_raster(tmp_path / "nir.tif", nir, transform=t)
    sources = [ImageSource("red.tif", str(tmp_path / "red.tif"), ("red",)),
               ImageSource("nir.tif", str(tmp_path / "nir.tif"), ("nir", "alpha"))]
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=8)
    red_v, nir_v = dask.compute(m.bands["red"].data, m.bands["nir"].data)
    assert np.isnan(red_v[0:3]).all() and np.isnan(nir_v[:, 0:4]).all()
    assert np.count_nonzero(np.isnan(nir_v)) == 30 * 4
    summary, ndvi = _ndvi_summary(m)
    valid = np.isfinite(ndvi)
    assert valid.sum() == 27 * 26
    assert summary["mean"] == pytest.approx(0.4 / 0.6, rel=1e-6)
    assert summary["valid_area_m2"] == pytest.approx(27 * 26 * 0.01, rel=1e-6)
    _assert_stats(summary, ndvi, grid_pixels=900, pixel_area=0.01)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32633"])
def test_mosaic__reprojected_tile_matches_gdal_reference(tmp_path, crs):
    rng = np.random.default_rng(5)
    base = np.stack([rng.uniform(0.05, 0.2, (40, 40)), rng.uniform(0.3, 0.6, (40, 40))]
                    ).astype(np.float32)
    write_raster(tmp_path / "a.tif", base, transform=north_up(left=X0, top=Y0, res=1.0),
                 nodata=None)
    other = np.stack([rng.uniform(0.05, 0.2, (25, 25)), rng.uniform(0.3, 0.6, (25, 25))]
                     ).astype(np.float32)
    if crs == "EPSG:4326":  # ~1.4 m pixels at 45° N, over the east edge of tile a
        lon, lat = rasterio.warp.transform("EPSG:32633", "EPSG:4326", [X0 + 25], [Y0 - 10])
        t = north_up(left=lon[0], top=lat[0], res=2e-5, res_y=1.3e-5)
    else:  # other resolution and a sub-pixel shift
        t = north_up(left=X0 + 25.3, top=Y0 - 10.7, res=1.6)
    write_raster(tmp_path / "b.tif", other, crs=crs, transform=t, nodata=-1)
    sources = [ImageSource("a.tif", str(tmp_path / "a.tif"), ("red", "nir")),
               ImageSource("b.tif", str(tmp_path / "b.tif"), ("red", "nir"))]
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=13)
    g = m.grid
    assert g.crs.to_epsg() == 32633 and g.res == (1.0, 1.0) and g.bounds[2] > X0 + 40
    expected = np.full((2, g.height, g.width), np.nan, dtype=np.float32)
    warped = np.full_like(expected, np.nan)
    with rasterio.open(tmp_path / "b.tif") as src:
        for i in (0, 1):
            reproject(src.read(i + 1).astype(np.float32), warped[i], src_transform=src.transform,
                      src_crs=src.crs, src_nodata=-1, dst_transform=g.transform, dst_crs=g.crs,
                      dst_nodata=np.nan, resampling=Resampling.bilinear)
    r0, c0 = (~g.transform @ (X0, Y0))[::-1]
    expected[:, int(r0):int(r0) + 40, int(c0):int(c0) + 40] = base
    expected = np.where(np.isnan(expected), warped, expected)
    red, nir = dask.compute(m.bands["red"].data, m.bands["nir"].data)
    assert np.isfinite(red).sum() > 40 * 40  # the second tile contributes pixels
    np.testing.assert_array_equal(np.isnan(red), np.isnan(expected[0]))
    np.testing.assert_allclose(red, expected[0], atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(nir, expected[1], atol=2e-3, equal_nan=True)
    summary, _ = _ndvi_summary(m)
    exp_ndvi = (expected[1] - expected[0]) / (expected[1] + expected[0])
    _assert_stats(summary, exp_ndvi, grid_pixels=g.width * g.height, pixel_area=1.0)


def test_mosaic__tasks_are_picklable_and_lazy(tmp_path):
    write_raster(tmp_path / "a.tif", np.ones((2, 20, 20), np.uint8),
                 transform=north_up(left=X0, top=Y0, res=1.0))
    m = mosaic(sources=[ImageSource("a.tif", str(tmp_path / "a.tif"), ("red", "nir"),
                                    {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"})],
               reflectance_scale=0.5, chunks=8)
    graph = dict(m.bands["nir"].data.__dask_graph__())
    assert len(graph) == 9  # one read task per block, nothing loaded yet
    restored = pickle.loads(pickle.dumps(graph))
    assert set(restored) == set(graph)
    assert float(m.bands["nir"].sum().compute()) == pytest.approx(400 * 0.5)


def test_open_header__unreadable_files_name_the_file(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "page.tif").write_bytes(b"<html><body>AccessDenied</body></html>")
    for name in ("empty.tif", "page.tif"):
        with pytest.raises(UnreadableImage, match=rf"{name}.*upload the file again"):
            open_header(ImageSource(name, str(tmp_path / name), ()))


def test_mosaic__tile_corrupt_mid_file_fails_clearly_on_read(tmp_path):
    data = np.random.default_rng(0).integers(1, 60_000, (2, 256, 256)).astype(np.uint16)
    path = write_raster(tmp_path / "c.tif", data, transform=north_up(left=X0, top=Y0, res=1.0),
                        tiled=True, blocksize=64, compress="deflate")
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 200] = b"\xff" * 200
    path.write_bytes(bytes(raw))
    header = open_header(ImageSource("c.tif", str(path), ()))  # the header and last tile are fine
    assert (header.width, header.height, header.block_shapes[0]) == (256, 256, (64, 64))
    m = mosaic(sources=[ImageSource("c.tif", str(path), ("red", "nir"))], reflectance_scale=1.0,
               chunks=64)
    with pytest.raises(UnreadableImage, match=r"c\.tif.*upload the file again"):
        m.bands["red"].compute()


def test_batch_grid__real_flir_frame_has_no_crs(real_data):
    flir = real_data / "flir_duo_pro_r_radiometric.tiff"
    with pytest.raises(MissingCRS, match=r"flir_duo_pro_r_radiometric\.tiff: has no CRS.*"
                                         r"gdal_translate -a_srs"):
        batch_grid([ImageSource("flir_duo_pro_r_radiometric.tiff", str(flir), ("thermal",))],
                   bands=("thermal",))


def test_batch_grid__no_overlap_and_too_large(real_data):
    sources = [ImageSource("rgbn.tif", str(real_data / "rgbn_5m.tif"), ("red", "green", "blue", "nir")),
               ImageSource("rgb.tif", str(real_data / "landsat7_rgb_byte.tif"), ("red", "green", "blue"))]
    # two images apart: the second is named (the first sets the grid)
    with pytest.raises(NoOverlap, match=r"^rgb\.tif: covers"):
        batch_grid(sources)
    with pytest.raises(RasterTooLarge, match=r"rgbn\.tif: declares 515 x 403 pixels"):
        batch_grid(sources[:1], max_pixels=100_000)


@pytest.mark.parametrize(("name", "bands"), [
    ("landsat7_etm_6band.tif", ("blue", "green", "red", "nir", "other", "other")),
    ("rgbn_5m.tif", ("red", "green", "blue", "nir")),
])
def test_mosaic__real_landsat_ndvi_in_range(real_data, name, bands):
    path = real_data / name
    m = mosaic(sources=[ImageSource(name, str(path), bands)], reflectance_scale=1 / 255, chunks=128)
    with rasterio.open(path) as ds:
        assert m.grid == Grid.from_dataset(ds)
        red = ds.read(bands.index("red") + 1).astype(np.float32) / np.float32(255)
        nir = ds.read(bands.index("nir") + 1).astype(np.float32) / np.float32(255)
    summary, ndvi = _ndvi_summary(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        exp = (nir - red) / (nir + red)
    np.testing.assert_allclose(ndvi, exp, atol=1e-6, equal_nan=True)
    assert -1.0 <= summary["min"] <= summary["max"] <= 1.0
    _assert_stats(summary, exp, grid_pixels=m.grid.width * m.grid.height,
                  pixel_area=m.grid.pixel_area_m2)
