"""COG profiles, staged writing, translation and PNG previews, read back with rasterio."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from dask.delayed import Delayed
from rio_cogeo.cogeo import cog_validate

from pipeline.core.cog import COG_PROFILES, stage_rasters, translate_to_cog, write_cog
from pipeline.core.errors import MissingCRS
from pipeline.core.preview import png_preview, preview_shape
from pipeline.core.ramps import Scale, colorize
from pipeline.core.registry import INDICES, compute

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
ORIGIN_X, ORIGIN_Y, PIXEL = 500_000.0, 4_000_000.0, 0.5
TRANSFORM = Affine(PIXEL, 0.0, ORIGIN_X, 0.0, -PIXEL, ORIGIN_Y)


def raster(values: np.ndarray) -> xr.DataArray:
    height, width = values.shape
    return xr.DataArray(
        values, dims=("y", "x"),
        coords={"y": ORIGIN_Y - PIXEL / 2 - PIXEL * np.arange(height),
                "x": ORIGIN_X + PIXEL / 2 + PIXEL * np.arange(width)},
    ).rio.write_crs("EPSG:32633")


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    """1100 x 1300 float32 with a NaN hole and a NaN edge strip."""
    rng = np.random.default_rng(7)
    v = rng.uniform(-1.0, 1.0, (1100, 1300)).astype(np.float32)
    v[200:260, 400:900] = np.nan
    v[:, -3:] = np.nan
    return v


@pytest.fixture(scope="module")
def written(values, tmp_path_factory) -> dict[str, Path]:
    """Both profiles written from dask arrays whose chunks are not multiples of the 512 block."""
    out = tmp_path_factory.mktemp("cog")
    da = raster(values).chunk({"y": 300, "x": 700})
    write_cog(da, out / "ndvi.tif", profile="float32")
    write_cog(colorize(da, scale=Scale("RdYlGn", -0.2, 1.0)), out / "heat.tif", profile="rgba")
    return {"float32": out / "ndvi.tif", "rgba": out / "heat.tif"}


def test_cog_profiles__data_in_one_place():
    f32, rgba = COG_PROFILES["float32"], COG_PROFILES["rgba"]
    assert f32["creation"]["PREDICTOR"] == "FLOATING_POINT"
    assert f32["creation"]["BLOCKSIZE"] == "512"
    assert f32["creation"]["OVERVIEW_RESAMPLING"] == "AVERAGE" and np.isnan(f32["nodata"])
    assert rgba["creation"]["PREDICTOR"] == "STANDARD" and rgba["dtype"] == "uint8"


@pytest.mark.parametrize("profile", ["float32", "rgba"])
def test_write_cog__valid_cog_with_overviews_and_georeferencing(written, profile):
    is_valid, errors, warnings = cog_validate(written[profile])
    assert is_valid, errors
    assert not warnings
    with rasterio.open(written[profile]) as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.almost_equals(TRANSFORM)
        assert (src.width, src.height) == (1300, 1100)
        assert src.block_shapes[0] == (512, 512)
        assert src.overviews(1) == [2, 4]
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"


def test_write_cog__float32_roundtrips_exactly_with_nan_nodata(written, values):
    with rasterio.open(written["float32"]) as src:
        assert src.count == 1 and src.dtypes == ("float32",)
        assert np.isnan(src.nodata)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        np.testing.assert_array_equal(src.read(1), values)


def test_write_cog__rgba_alpha_zero_exactly_where_nan(written, values):
    with rasterio.open(written["rgba"]) as src:
        assert src.count == 4 and src.dtypes == ("uint8",) * 4 and src.nodata is None
        assert [c.name for c in src.colorinterp] == ["red", "green", "blue", "alpha"]
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        rgba = src.read()
    np.testing.assert_array_equal(rgba[3] == 0, np.isnan(values))
    np.testing.assert_array_equal(rgba[3][~np.isnan(values)], 255)
    expected = colorize(raster(values), scale=Scale("RdYlGn", -0.2, 1.0)).values
    np.testing.assert_array_equal(rgba, expected)


def test_stage_rasters__one_task_for_many_outputs_computed_with_stats(tmp_path, values):
    da = raster(values).chunk({"y": 400, "x": 333})
    rgba = colorize(da, scale=Scale("inferno", 0.0, 1.0))
    staged = stage_rasters({tmp_path / "a.tif": da, tmp_path / "b.tif": rgba})
    assert isinstance(staged, Delayed)
    pickle.loads(pickle.dumps(staged))  # picklable graph: works with distributed workers
    count, mean = dask.compute(staged, da.mean())
    assert count == 5 * values.size  # 1 float band + 4 RGBA bands
    assert float(mean) == pytest.approx(float(np.nanmean(values)), rel=1e-5)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert a.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") is None  # staged uncompressed
        np.testing.assert_array_equal(a.read(1), values)
        np.testing.assert_array_equal(b.read(), rgba.values)


def test_stage_rasters__numpy_input_and_distributed_scheduler(tmp_path, values):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=True, n_workers=2, threads_per_worker=1,
                            dashboard_address=None) as client:
        staged = stage_rasters({tmp_path / "a.tif": raster(values)})  # numpy-backed
        client.compute(staged).result()
    with rasterio.open(tmp_path / "a.tif") as src:
        np.testing.assert_array_equal(src.read(1), values)


def test_stage_rasters__without_crs_names_the_file(tmp_path):
    da = xr.DataArray(np.zeros((4, 4), np.float32), dims=("y", "x"))
    with pytest.raises(MissingCRS, match="a.tif.*write_crs"):
        stage_rasters({tmp_path / "a.tif": da})


def test_translate_to_cog__unknown_profile_leaves_no_file(tmp_path, written):
    with pytest.raises(ValueError, match="unknown COG profile"):
        translate_to_cog(written["float32"], tmp_path / "x.tif", profile="jpeg")
    assert list(tmp_path.iterdir()) == []


def test_write_cog__dtype_not_matching_profile_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="cast first"):
        write_cog(raster(np.zeros((4, 4), np.float64)), tmp_path / "x.tif", profile="float32")
    assert list(tmp_path.iterdir()) == []


def test_preview_shape__long_side_capped_aspect_kept():
    assert preview_shape(width=1300, height=1100, max_size=1024) == (1024, 866)
    assert preview_shape(width=300, height=4000, max_size=1024) == (76, 1024)
    assert preview_shape(width=200, height=100, max_size=1024) == (200, 100)


def test_png_preview__size_and_alpha(tmp_path, written, values):
    size = png_preview(written["rgba"], tmp_path / "p.png", max_size=325)
    assert size == (325, 275)
    with rasterio.open(tmp_path / "p.png") as png:
        assert png.driver == "PNG" and png.count == 4 and (png.width, png.height) == size
        rgba = png.read()
    assert rgba[3, 52:63, 102:223].max() == 0  # the NaN hole (rows 200:260, cols 400:900) / 4
    assert (rgba[3] == 255).mean() > 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # no temp or .aux.xml


def test_png_preview__rejects_non_rgba(tmp_path, written):
    with pytest.raises(ValueError, match="colourise"):
        png_preview(written["float32"], tmp_path / "p.png")


def test_pipeline__real_rgbn_ndvi_to_cogs_and_preview(tmp_path):
    bands = rioxarray.open_rasterio(REAL / "rgbn_5m.tif", chunks={"x": 256, "y": 256})
    reflectance = {
        name: (bands.sel(band=i, drop=True).astype(np.float32) / np.float32(255.0))
        for i, name in ((1, "red"), (2, "green"), (3, "blue"), (4, "nir"))
    }
    ndvi = compute(INDICES["ndvi"], reflectance)
    heat = colorize(ndvi, scale=INDICES["ndvi"].scale)
    staged = stage_rasters({tmp_path / "s_ndvi.tif": ndvi, tmp_path / "s_heat.tif": heat})
    _, vmax = dask.compute(staged, ndvi.max())
    translate_to_cog(tmp_path / "s_ndvi.tif", tmp_path / "ndvi.tif", profile="float32")
    translate_to_cog(tmp_path / "s_heat.tif", tmp_path / "heat.tif", profile="rgba")
    assert cog_validate(tmp_path / "ndvi.tif")[0] and cog_validate(tmp_path / "heat.tif")[0]
    assert png_preview(tmp_path / "heat.tif", tmp_path / "heat.png", max_size=200) == (200, 156)
    with rasterio.open(tmp_path / "ndvi.tif") as src, rasterio.open(REAL / "rgbn_5m.tif") as raw:
        assert src.crs == raw.crs and src.transform.almost_equals(raw.transform)
        assert float(np.nanmax(src.read(1))) == pytest.approx(float(vmax))
