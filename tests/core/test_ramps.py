"""Colour ramps, colourisation and legend stops."""

from __future__ import annotations

import math

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from pipeline.core.ramps import Scale, colorize, colour_table, colours, legend_stops, palette_index
from pipeline.core.registry import CHANGE_SCALE, INDICES, THERMAL_SCALE

UNIT = Scale("RdYlGn", 0.0, 1.0)


def raster(values, dtype=np.float32) -> xr.DataArray:
    values = np.asarray(values, dtype=dtype)
    height, width = values.shape
    return xr.DataArray(
        values, dims=("y", "x"),
        coords={"y": 100.0 - 2.0 * np.arange(height), "x": 10.0 + 2.0 * np.arange(width)},
    ).rio.write_crs("EPSG:32618")


def test_colour_table__cached_and_unknown_ramp_is_a_clear_error():
    assert colour_table("RdYlGn") is colour_table("RdYlGn")
    with pytest.raises(ValueError, match="unknown colour ramp 'NoSuchRamp'"):
        colour_table("NoSuchRamp")


def test_colorize__vmin_vmax_middle_and_clipping():
    table = colour_table("RdYlGn")
    rgba = colorize(raster([[0.0, 1.0, 0.5, -3.0, 7.0]]), scale=UNIT).values
    assert rgba.shape == (4, 1, 5) and rgba.dtype == np.uint8
    # p = 1 + min(floor(t * 255), 254): vmin -> 1, vmax -> 255, 0.5 -> 1 + 127
    np.testing.assert_array_equal(rgba[:, 0, 0], table[1])      # vmin -> first colour
    np.testing.assert_array_equal(rgba[:, 0, 1], table[255])    # vmax -> last colour
    np.testing.assert_array_equal(rgba[:, 0, 2], table[128])    # middle -> entry 128
    np.testing.assert_array_equal(rgba[:, 0, 3], table[1])      # below vmin clipped
    np.testing.assert_array_equal(rgba[:, 0, 4], table[255])    # above vmax clipped
    np.testing.assert_array_equal(rgba[3], 255)


def test_colorize__alpha_zero_exactly_where_nan():
    values = np.array([[0.1, np.nan], [np.nan, 0.9]], dtype=np.float32)
    rgba = colorize(raster(values), scale=UNIT).values
    np.testing.assert_array_equal(rgba[3] == 0, np.isnan(values))
    assert np.all(rgba[:3][:, np.isnan(values)] == 0)


def test_colorize__dask_lazy_and_same_mapping_for_every_chunk():
    rng = np.random.default_rng(1)
    values = rng.uniform(-0.5, 1.5, (37, 41)).astype(np.float32)
    values[5:9, 30:] = np.nan
    eager = colorize(raster(values), scale=UNIT)
    lazy = colorize(raster(values).chunk({"y": 10, "x": 7}), scale=UNIT)
    assert isinstance(lazy.data, dsa.Array)
    assert lazy.data.chunks[0] == (4,)
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_colorize__keeps_crs_and_transform():
    da = raster(np.zeros((3, 4)))
    rgba = colorize(da, scale=UNIT)
    assert rgba.dims == ("band", "y", "x")
    assert list(rgba.band.values) == [1, 2, 3, 4]
    assert rgba.rio.crs == da.rio.crs
    assert rgba.rio.transform() == da.rio.transform()


def test_colorize__rejects_3d_input():
    with pytest.raises(ValueError, match="2-D"):
        colorize(raster(np.zeros((2, 2))).expand_dims("band"), scale=UNIT)


def test_legend_stops__values_and_colours_match_colorize():
    scale = INDICES["ndvi"].scale
    stops = legend_stops(scale, n=7)
    values = [v for v, _ in stops]
    np.testing.assert_allclose(values, np.linspace(-0.2, 1.0, 7))
    # float64, as the legend's values are: a stop on a palette boundary (0.6 here) rounded to
    # float32 may land one entry higher, as a float32 pixel of that value does on the map.
    rgba = colorize(raster([values], dtype=np.float64), scale=scale).values
    for i, (_, rgb) in enumerate(stops):
        assert rgb == tuple(int(c) for c in rgba[:3, 0, i])
    assert stops[0][1] == tuple(int(c) for c in colour_table("RdYlGn")[1, :3])
    assert stops[-1][1] == tuple(int(c) for c in colour_table("RdYlGn")[255, :3])


def test_legend_stops__thermal_default_six():
    stops = legend_stops(THERMAL_SCALE)
    assert len(stops) == 6
    assert stops[0][0] == THERMAL_SCALE.vmin and stops[-1][0] == THERMAL_SCALE.vmax


def test_scale__vmin_must_be_below_vmax():
    with pytest.raises(ValueError, match="vmin"):
        Scale("RdYlGn", 1.0, 1.0)


def test_colour_table__entry_zero_transparent_then_the_ramp_at_p_minus_1_over_254():
    from matplotlib import colormaps

    table = colour_table("RdYlGn")
    assert table.shape == (256, 4) and table.dtype == np.uint8
    assert tuple(table[0]) == (0, 0, 0, 0)
    expected = np.round(colormaps["RdYlGn"](np.arange(255) / 254)[:, :3] * 255)
    np.testing.assert_array_equal(table[1:, :3], expected)
    np.testing.assert_array_equal(table[1:, 3], 255)


def test_palette_index__formula_boundaries_and_nan():
    scale = Scale("viridis", -1.0, 1.0)
    v = np.array([-1.0, 1.0, np.nan, -7.0, 7.0, 0.0, -1.0 + 2.0 / 255 * 3.5], dtype=np.float32)
    got = palette_index(v, vmin=scale.vmin, vmax=scale.vmax)
    t = (np.clip(v[[0, 1, 3, 4, 5, 6]].astype(np.float64), -1, 1) + 1) / 2
    want = 1 + np.minimum(np.floor(t * 255), 254)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[[0, 1, 3, 4, 5, 6]], want)
    assert list(got[:3]) == [1, 255, 0]


def test_legend_and_pdf_colours_come_from_the_heatmap_table():
    from pipeline.core import report_charts
    from pipeline.core.summary import Scale as SummaryScale

    scale = INDICES["ndvi"].scale
    values = np.linspace(-0.5, 1.3, 37)
    table = colour_table(scale.ramp)
    index = palette_index(values, vmin=scale.vmin, vmax=scale.vmax)
    pdf = report_charts.ramp_colours(SummaryScale(ramp=scale.ramp, vmin=scale.vmin,
                                                  vmax=scale.vmax), values)
    for colour, p in zip(pdf, index, strict=True):
        assert tuple(round(c * 255) for c in (colour.red, colour.green, colour.blue)) == \
            tuple(int(c) for c in table[p, :3])
    for value, rgb in legend_stops(scale, n=5):
        p = palette_index(np.array([value]), vmin=scale.vmin, vmax=scale.vmax)[0]
        assert rgb == tuple(int(c) for c in table[p, :3])


# Every fixed scale a heatmap, tile or legend can use: the built-in indices, thermal, change.
SCALES = {**{name: index.scale for name, index in INDICES.items()}, "thermal": THERMAL_SCALE,
          "change": CHANGE_SCALE}


def design_index(v: float, vmin: float, vmax: float) -> int:
    """DESIGN.md §3.1, written out independently of the code under test, in Python floats
    (float64): p = 1 + min(floor((clip(v, vmin, vmax) - vmin) / (vmax - vmin) * 255), 254) for a
    finite v, 0 otherwise (NaN and ±inf are no data)."""
    if not math.isfinite(v):
        return 0
    clipped = min(max(v, vmin), vmax)
    return 1 + min(math.floor((clipped - vmin) / (vmax - vmin) * 255), 254)


def palette_stops(scale: Scale) -> np.ndarray:
    """vmin + k (vmax - vmin) / 255 for k = 0..255: every palette boundary of the scale."""
    return np.array([scale.vmin + k * (scale.vmax - scale.vmin) / 255 for k in range(256)])


def test_change_scale__is_design_3_3s():
    assert CHANGE_SCALE == Scale("RdBu", -0.5, 0.5)


@pytest.mark.parametrize("name", sorted(SCALES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_palette_index__is_the_design_formula_at_every_palette_boundary(name, dtype):
    scale = SCALES[name]
    values = np.concatenate([palette_stops(scale), [np.nan, np.inf, -np.inf, scale.vmin - 1,
                                                     scale.vmax + 1]]).astype(dtype)
    got = palette_index(values, vmin=scale.vmin, vmax=scale.vmax)
    want = [design_index(float(v), scale.vmin, scale.vmax) for v in values]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    assert list(got[256:259]) == [0, 0, 0]  # NaN and ±inf: transparent
    # The formula puts each stop k on palette entry k + 1 or, where the stop itself rounds
    # below the boundary, on k; never anywhere else.
    assert np.all(np.abs(got[:256].astype(int) - (np.arange(256) + 1)) <= 1)


@pytest.mark.parametrize("name", sorted(SCALES))
def test_heatmap_cog__pixels_are_the_design_formula_at_every_palette_boundary(name, tmp_path):
    from pipeline.core.cog import write_cog

    scale = SCALES[name]
    values = np.concatenate([palette_stops(scale), [np.nan, np.inf, -np.inf, 0.0]])
    grid = values.astype(np.float32).reshape(20, 13)
    write_cog(raster(grid), tmp_path / "heat.tif", profile="palette", scale=scale, window=7)
    with rasterio.open(tmp_path / "heat.tif") as src:
        got = src.read(1)
        table = src.colormap(1)
    want = [[design_index(float(v), scale.vmin, scale.vmax) for v in row] for row in grid]
    np.testing.assert_array_equal(got, want)
    expected_table = colour_table(scale.ramp)
    assert all(table[p] == tuple(int(c) for c in expected_table[p]) for p in range(256))


@pytest.mark.parametrize("name", sorted(SCALES))
def test_legend_colours__the_table_at_the_design_index(name):
    """The PDF legend and histogram (`colours`, `legend_stops`) colour a value as the COG does."""
    scale = SCALES[name]
    values = palette_stops(scale)
    table = colour_table(scale.ramp)
    want = table[[design_index(float(v), scale.vmin, scale.vmax) for v in values]]
    np.testing.assert_array_equal(colours(scale, values), want)
    for value, rgb in legend_stops(scale, n=6):
        assert rgb == tuple(int(c) for c in table[design_index(value, scale.vmin, scale.vmax), :3])
