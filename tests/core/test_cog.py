"""COG profiles and encodings, staged writing, translation and PNG previews, read back with
rasterio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.enums import ColorInterp
from rio_cogeo.cogeo import cog_validate

from pipeline.core.cog import COG_PROFILES, CogEncoding, translate_to_cog, write_cog
from pipeline.core.errors import ConfigurationError, MissingCRS
from pipeline.core.preview import png_preview, preview_shape
from pipeline.core.ramps import Scale, colour_table, palette_index
from pipeline.core.registry import INDICES, compute

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


SCALE = Scale("RdYlGn", -0.2, 1.0)


@pytest.fixture(scope="module")
def written(values, tmp_path_factory) -> dict[str, Path]:
    """Every profile written from dask arrays whose chunks are not multiples of the 512 block."""
    out = tmp_path_factory.mktemp("cog")
    da = raster(values).chunk({"y": 300, "x": 700})
    write_cog(da, out / "ndvi.tif", profile="float32")
    write_cog(da, out / "deflate.tif",
              profile=CogEncoding(compression="deflate").profile("float32"))
    write_cog(da, out / "lerc.tif",
              profile=CogEncoding(compression="lerc", max_z_error=1e-3).profile("float32"))
    write_cog(da, out / "heat.tif", profile="palette", scale=SCALE, window=500)
    return {"float32": out / "ndvi.tif", "deflate": out / "deflate.tif", "lerc": out / "lerc.tif",
            "palette": out / "heat.tif"}


def test_cog_profiles__data_in_one_place():
    f32, palette = COG_PROFILES["float32"], COG_PROFILES["palette"]
    assert f32["creation"]["COMPRESS"] == "ZSTD"
    assert f32["creation"]["PREDICTOR"] == "FLOATING_POINT"
    assert COG_PROFILES["float32-deflate"]["creation"]["PREDICTOR"] == "FLOATING_POINT"
    assert COG_PROFILES["float32-lerc"]["creation"]["COMPRESS"] == "LERC_ZSTD"
    for name in ("float32", "float32-deflate", "float32-lerc"):
        p = COG_PROFILES[name]
        assert p["creation"]["BLOCKSIZE"] == "512" and np.isnan(p["nodata"])
        assert p["creation"]["OVERVIEW_RESAMPLING"] == "AVERAGE"
    assert palette["dtype"] == "uint8" and palette["nodata"] == 0
    assert palette["creation"]["OVERVIEW_RESAMPLING"] in ("NEAREST", "MODE")


def test_cog_encoding__settings_checked_and_summarised():
    assert CogEncoding().summary() == {"float": "ZSTD", "max_z_error": None, "heatmap": "PALETTE"}
    assert CogEncoding("deflate").summary()["float"] == "DEFLATE"
    lerc = CogEncoding("lerc", 1e-4)
    assert lerc.summary() == {"float": "LERC_ZSTD", "max_z_error": 1e-4, "heatmap": "PALETTE"}
    assert lerc.profile("float32").creation["MAX_Z_ERROR"] == "0.0001"
    for bad in (None, -1e-6, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="IMAGERY_COG_MAX_Z_ERROR"):
            CogEncoding("lerc", bad)
    with pytest.raises(ConfigurationError, match="IMAGERY_COG_MAX_Z_ERROR"):
        CogEncoding("zstd", 0.1)
    with pytest.raises(ConfigurationError, match="IMAGERY_COG_COMPRESSION: is 'jpeg'"):
        CogEncoding("jpeg")


def test_cog_encoding__lerc_with_max_z_error_0_is_lossless(values, tmp_path):
    """GDAL's LERC with MAX_Z_ERROR=0 keeps every float32 value bit for bit (and NaN)."""
    da = raster(values)
    encoding = CogEncoding("lerc", 0.0)
    assert encoding.summary()["max_z_error"] == 0.0
    write_cog(da, tmp_path / "lossless.tif", profile=encoding.profile("float32"))
    with rasterio.open(tmp_path / "lossless.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "LERC_ZSTD"
        np.testing.assert_array_equal(ds.read(1), np.asarray(da.values, dtype=np.float32))


@pytest.mark.parametrize("profile", ["float32", "deflate", "lerc", "palette"])
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
        expected = {"float32": "ZSTD", "deflate": "DEFLATE", "lerc": "LERC_ZSTD",
                    "palette": "ZSTD"}[profile]
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == expected


@pytest.mark.parametrize("profile", ["float32", "deflate"])
def test_write_cog__float32_lossless_roundtrip_with_nan_nodata(written, values, profile):
    with rasterio.open(written[profile]) as src:
        assert src.count == 1 and src.dtypes == ("float32",)
        assert np.isnan(src.nodata)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        np.testing.assert_array_equal(src.read(1), values)


def test_write_cog__lerc_within_its_bound_recorded_in_the_file(written, values):
    with rasterio.open(written["lerc"]) as src:
        assert src.tags()["MAX_Z_ERROR"] == "0.001"
        got = src.read(1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(values))
    valid = ~np.isnan(values)
    assert np.abs(got[valid] - values[valid]).max() <= 1e-3 * (1 + 1e-4)


def test_write_cog__palette_one_band_table_and_nodata_zero_exactly_where_nan(written, values):
    with rasterio.open(written["palette"]) as src:
        assert src.count == 1 and src.dtypes == ("uint8",) and src.nodata == 0
        assert src.colorinterp[0] == ColorInterp.palette
        colormap = src.colormap(1)
        index = src.read(1)
        overview = src.read(1, out_shape=(275, 325))
    table = colour_table(SCALE.ramp)
    assert colormap[0] == (0, 0, 0, 0)
    for p in (1, 128, 255):
        assert colormap[p] == tuple(int(c) for c in table[p])
    np.testing.assert_array_equal(index == 0, np.isnan(values))
    np.testing.assert_array_equal(index, palette_index(values, vmin=SCALE.vmin, vmax=SCALE.vmax))
    assert set(np.unique(overview)) <= set(np.unique(index))  # NEAREST: colours of the scale


def test_palette_cog__exact_pixels_at_vmin_vmax_and_nan(tmp_path):
    v = np.array([[-0.2, 1.0, np.nan, -5.0], [5.0, 0.4, -0.2 + 1.2 / 255 * 0.5, 1.0 - 1e-6]],
                 dtype=np.float32)
    write_cog(raster(v), tmp_path / "h.tif", profile="palette", scale=SCALE)
    with rasterio.open(tmp_path / "h.tif") as src:
        got = src.read(1)
    # p = 1 + min(floor((clip(v) - vmin) / (vmax - vmin) * 255), 254); 0 where NaN
    np.testing.assert_array_equal(got, [[1, 255, 0, 1], [255, 128, 1, 255]])
    assert cog_validate(tmp_path / "h.tif")[0]


def test_write_cog__without_crs_names_the_file(tmp_path):
    da = xr.DataArray(np.zeros((4, 4), np.float32), dims=("y", "x"))
    with pytest.raises(MissingCRS, match="a.tif.*write_crs"):
        write_cog(da, tmp_path / "a.tif", profile="float32")


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
    size = png_preview(written["palette"], tmp_path / "p.png", max_size=325)
    assert size == (325, 275)
    with rasterio.open(tmp_path / "p.png") as png:
        assert png.driver == "PNG" and png.count == 4 and (png.width, png.height) == size
        rgba = png.read()
    assert rgba[3, 52:63, 102:223].max() == 0  # the NaN hole (rows 200:260, cols 400:900) / 4
    assert (rgba[3] == 255).mean() > 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # no temp or .aux.xml
    with rasterio.open(written["palette"]) as src:  # the PNG's colours are the COG's table
        index = src.read(1, out_shape=(275, 325))
    np.testing.assert_array_equal(np.moveaxis(rgba, 0, -1), colour_table(SCALE.ramp)[index])


def test_png_preview__rejects_non_palette(tmp_path, written):
    with pytest.raises(ValueError, match="colourise"):
        png_preview(written["float32"], tmp_path / "p.png")


def test_pipeline__real_rgbn_ndvi_to_cogs_and_preview(tmp_path, real_data):
    bands = rioxarray.open_rasterio(real_data / "rgbn_5m.tif", chunks={"x": 256, "y": 256})
    reflectance = {
        name: (bands.sel(band=i, drop=True).astype(np.float32) / np.float32(255.0))
        for i, name in ((1, "red"), (2, "green"), (3, "blue"), (4, "nir"))
    }
    ndvi = compute(INDICES["ndvi"], reflectance)
    write_cog(ndvi, tmp_path / "ndvi.tif", profile="float32")
    write_cog(ndvi, tmp_path / "heat.tif", profile="palette", scale=INDICES["ndvi"].scale)
    assert cog_validate(tmp_path / "ndvi.tif")[0] and cog_validate(tmp_path / "heat.tif")[0]
    assert png_preview(tmp_path / "heat.tif", tmp_path / "heat.png", max_size=200) == (200, 156)
    with rasterio.open(tmp_path / "ndvi.tif") as src, rasterio.open(real_data / "rgbn_5m.tif") as raw:
        assert src.crs == raw.crs and src.transform.almost_equals(raw.transform)
        assert float(np.nanmax(src.read(1))) == pytest.approx(float(ndvi.max()))
