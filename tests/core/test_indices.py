"""Index formulas and the index registry."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.core import indices
from pipeline.core.registry import (
    INDICES, NDVI_CLASSES, THERMAL_SCALE, available_indices, compute,
)
from tests.reference import FORMULAS as REFERENCE  # numpy float64, straight from DESIGN.md §3

CRS = "EPSG:32633"


def raster(values, *, chunks: int | None = None) -> xr.DataArray:
    """A small float32 raster on a 0.5 m UTM grid; dask-backed when `chunks` is given."""
    values = np.asarray(values, dtype=np.float32)
    height, width = values.shape
    da = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={"y": 4_000_000.0 - 0.25 - 0.5 * np.arange(height),
                "x": 500_000.0 + 0.25 + 0.5 * np.arange(width)},
        attrs={"source": "test"},
    ).rio.write_crs(CRS)
    return da.chunk(chunks) if chunks else da


def random_bands(names, *, shape=(13, 17), seed=0) -> dict[str, xr.DataArray]:
    rng = np.random.default_rng(seed)
    return {n: raster(rng.uniform(0.0, 1.0, shape)) for n in names}



def test_ndvi__analytic_values():
    nir = raster([[1.0, 0.0, 0.5, 0.75, 0.25]])
    red = raster([[0.0, 1.0, 0.5, 0.25, 0.75]])
    result = indices.ndvi(nir=nir, red=red).values
    np.testing.assert_array_equal(result, [[1.0, -1.0, 0.0, 0.5, -0.5]])


def test_ndmi__analytic_values():
    # wet canopy (nir 0.4, swir1 0.1) 0.6; dry soil (0.25, 0.35) -1/6; equal 0; nodata NaN
    nir = raster([[0.4, 0.25, 0.3, 0.5, np.nan, 0.0]])
    swir1 = raster([[0.1, 0.35, 0.3, np.nan, 0.2, 0.0]])
    with np.errstate(all="raise"):
        result = indices.ndmi(nir=nir, swir1=swir1).values
    np.testing.assert_allclose(result[0, :3], [0.6, -1 / 6, 0.0], rtol=1e-6, atol=1e-7)
    assert np.isnan(result[0, 3:]).all()
    assert result.dtype == np.float32


def test_ndwi__analytic_values():
    # clear water (green 0.08, nir 0.02) 0.6; canopy (0.1, 0.4) -0.6; equal 0; nodata/0 NaN
    green = raster([[0.08, 0.1, 0.2, np.nan, 0.0]])
    nir = raster([[0.02, 0.4, 0.2, 0.3, 0.0]])
    with np.errstate(all="raise"):
        result = indices.ndwi(green=green, nir=nir).values
    np.testing.assert_allclose(result[0, :3], [0.6, -0.6, 0.0], rtol=1e-6, atol=1e-7)
    assert np.isnan(result[0, 3:]).all()


def test_ndvi__nan_where_denominator_zero_or_input_nan():
    nir = raster([[0.0, np.nan, 0.4, 0.3]])
    red = raster([[0.0, 0.2, np.nan, 0.1]])
    with np.errstate(all="raise"):  # no divide-by-zero or invalid-value warnings either
        result = indices.ndvi(nir=nir, red=red).values
    np.testing.assert_array_equal(np.isnan(result), [[True, True, True, False]])
    assert result[0, 3] == pytest.approx(0.5)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_index__matches_numpy_reference(name):
    index = INDICES[name]
    bands = random_bands(index.bands, seed=len(name))
    expected = REFERENCE[name]({n: b.values.astype(np.float64) for n, b in bands.items()})
    result = compute(index, bands)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result.values, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_index__dask_is_lazy_and_equals_numpy(name):
    index = INDICES[name]
    bands = random_bands(index.bands, seed=3)
    bands["red" if "red" in bands else index.bands[0]][2, 3] = np.nan
    lazy = compute(index, {n: b.chunk({"y": 5, "x": 6}) for n, b in bands.items()})
    assert isinstance(lazy.data, dsa.Array)
    assert lazy.dtype == np.float32
    eager = compute(index, bands)
    computed = lazy.compute()
    assert computed.dtype == np.float32
    np.testing.assert_array_equal(computed.values, eager.values)
    assert np.isnan(computed.values[2, 3])


@pytest.mark.parametrize("name", list(REFERENCE))
def test_index__nan_where_denominator_zero(name):
    index = INDICES[name]
    # All-zero inputs make every normalized-difference denominator 0; savi/evi have a +0.5/+1
    # constant, so pick (binary-exact) inputs that cancel it.
    zero_den = {
        "savi": {"nir": -0.25, "red": -0.25},
        "evi": {"nir": 0.5, "red": 1.0, "blue": 1.0},  # 0.5 + 6 - 7.5 + 1 == 0
    }.get(name, {b: 0.0 for b in index.bands})
    bands = {b: raster([[zero_den[b], 0.5]]) for b in index.bands}
    result = compute(index, bands).values
    assert np.isnan(result[0, 0])
    assert not np.isnan(result[0, 1])


def test_index__keeps_crs_transform_coords_and_attrs():
    nir, red = raster(np.full((4, 6), 0.75)), raster(np.full((4, 6), 0.25))
    result = indices.ndvi(nir=nir, red=red)
    assert result.rio.crs == nir.rio.crs
    assert result.rio.transform() == nir.rio.transform()
    xr.testing.assert_equal(result.x, nir.x)
    assert result.attrs == {"source": "test"}
    np.testing.assert_allclose(result.values, 0.5)


def test_index__non_float32_inputs_give_float32():
    nir = raster([[0.6]]).astype(np.float64)
    red = raster([[0.2]]).astype(np.float64)
    assert indices.savi(nir=nir, red=red).dtype == np.float32


def test_index__misaligned_grids_are_rejected():
    nir = raster(np.full((3, 3), 0.5))
    red = nir.assign_coords(x=nir.x + 0.5)
    with pytest.raises(ValueError):
        indices.ndvi(nir=nir, red=red)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, (2, 3, 4), elements=st.one_of(
        st.floats(0.0, 1.0, width=32), st.just(np.float32(np.nan)))),
)
def test_ndvi__in_unit_range_or_nan_for_nonnegative_reflectance(stack):
    nir, red = raster(stack[0]), raster(stack[1])
    result = indices.ndvi(nir=nir, red=red).values
    finite = ~np.isnan(result)
    assert np.all((result[finite] >= -1.0) & (result[finite] <= 1.0))
    undefined = np.isnan(stack[0]) | np.isnan(stack[1]) | (stack[0] + stack[1] == 0)
    np.testing.assert_array_equal(~finite, undefined)


def test_registry__design_order_and_complete_definitions():
    assert list(INDICES) == ["ndvi", "ndre", "gndvi", "savi", "evi", "vari", "ndmi", "ndwi"]
    for name, index in INDICES.items():
        assert index.name == name
        lo, hi = index.value_range
        assert lo < hi and index.scale.vmin < index.scale.vmax
        assert lo <= index.scale.vmin and index.scale.vmax <= hi
        assert index.code_version and index.description and index.title


def test_registry__ndvi_scale_and_classes_match_design():
    ndvi = INDICES["ndvi"]
    assert ndvi.scale.as_dict() == {"ramp": "RdYlGn", "vmin": -0.2, "vmax": 1.0}
    assert ndvi.classes == NDVI_CLASSES
    assert [(c.name, c.lower, c.upper) for c in ndvi.classes] == [
        ("bare", -1.0, 0.2), ("stressed", 0.2, 0.4), ("moderate", 0.4, 0.6), ("healthy", 0.6, 1.0),
    ]
    assert all(not d.classes for n, d in INDICES.items() if n != "ndvi")
    assert THERMAL_SCALE.ramp == "inferno" and THERMAL_SCALE.vmin < 20 < 40 < THERMAL_SCALE.vmax


def test_available_indices__by_bands():
    assert [d.name for d in available_indices(["red", "green", "blue"])] == ["vari"]
    assert [d.name for d in available_indices(["nir", "red"])] == ["ndvi", "savi"]
    five = ["blue", "green", "red", "red_edge", "nir", "thermal"]
    assert [d.name for d in available_indices(five)] == [n for n in INDICES if n != "ndmi"]
    assert [d.name for d in available_indices([*five, "swir2", "swir1"])] == list(INDICES)
    assert [d.name for d in available_indices(["nir", "swir1", "other"])] == ["ndmi"]
    assert available_indices([]) == []


def test_compute__names_result_and_sets_attrs():
    result = compute(INDICES["gndvi"], random_bands(["nir", "green", "red"]))
    assert result.name == "gndvi"
    assert result.attrs == {"long_name": "GNDVI", "units": "1", "code_version": "1"}
    assert result.rio.crs == CRS


def test_compute__missing_band_names_it():
    with pytest.raises(KeyError, match="red_edge"):
        compute(INDICES["ndre"], random_bands(["nir"]))
