"""Vegetation index formulas (DESIGN.md §3).

Inputs are surface reflectance as float32 `xr.DataArray`s on one grid, NaN = nodata. Every function
returns float32, NaN where any input is NaN or the denominator is 0, and keeps coords, attrs and the
rio CRS/transform of its inputs. Plain xarray arithmetic only, so dask-backed inputs stay lazy and
numpy-backed inputs give identical numbers.

Python float constants are "weak" scalars under NumPy 2 promotion rules, so `float32 * 2.5` stays
float32; inputs of another dtype are cast to float32 first.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

_F32 = np.float32


def _prepare(*bands: xr.DataArray) -> tuple[xr.DataArray, ...]:
    """float32 views of `bands`, checked to lie on exactly the same grid."""
    aligned = xr.align(*bands, join="exact")
    return tuple(b if b.dtype == _F32 else b.astype(_F32) for b in aligned)


def _ratio(numerator: xr.DataArray, denominator: xr.DataArray) -> xr.DataArray:
    """numerator / denominator, NaN where the denominator is 0 (no divide-by-zero warnings)."""
    safe = xr.where(denominator != 0, denominator, _F32(np.nan), keep_attrs=True)
    return (numerator / safe).astype(_F32, copy=False)


def _normalized_difference(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    a, b = _prepare(a, b)
    return _ratio(a - b, a + b)


def ndvi(*, nir: xr.DataArray, red: xr.DataArray) -> xr.DataArray:
    """Normalized difference vegetation index, float32 in [-1, 1]; NaN where nir + red == 0 or nodata."""
    return _normalized_difference(nir, red)


def ndre(*, nir: xr.DataArray, red_edge: xr.DataArray) -> xr.DataArray:
    """Normalized difference red edge, float32 in [-1, 1]; NaN where nir + red_edge == 0 or nodata.
    """
    return _normalized_difference(nir, red_edge)


def gndvi(*, nir: xr.DataArray, green: xr.DataArray) -> xr.DataArray:
    """Green NDVI, float32 in [-1, 1]; NaN where nir + green == 0 or nodata."""
    return _normalized_difference(nir, green)


def savi(*, nir: xr.DataArray, red: xr.DataArray) -> xr.DataArray:
    """Soil-adjusted vegetation index (L = 0.5): 1.5 * (nir - red) / (nir + red + 0.5), float32.

    In [-1.5, 1.5] for reflectances in [0, 1]; NaN where the denominator is 0 or an input is nodata.
    """
    nir, red = _prepare(nir, red)
    return _ratio(1.5 * (nir - red), nir + red + 0.5)


def evi(*, nir: xr.DataArray, red: xr.DataArray, blue: xr.DataArray) -> xr.DataArray:
    """Enhanced vegetation index: 2.5 * (nir - red) / (nir + 6 red - 7.5 blue + 1), float32.

    Unbounded in theory (the denominator can approach 0 over bright blue targets); NaN where the
    denominator is 0 or an input is nodata.
    """
    nir, red, blue = _prepare(nir, red, blue)
    return _ratio(2.5 * (nir - red), nir + 6.0 * red - 7.5 * blue + 1.0)


def vari(*, green: xr.DataArray, red: xr.DataArray, blue: xr.DataArray) -> xr.DataArray:
    """Visible atmospherically resistant index: (green - red) / (green + red - blue), float32.

    For RGB-only cameras. Unbounded in theory; NaN where the denominator is 0 or an input is nodata.
    """
    green, red, blue = _prepare(green, red, blue)
    return _ratio(green - red, green + red - blue)


def ndmi(*, nir: xr.DataArray, swir1: xr.DataArray) -> xr.DataArray:
    """Normalized difference moisture index (canopy water content), float32 in [-1, 1];
    NaN where nir + swir1 == 0 or nodata."""
    return _normalized_difference(nir, swir1)


def ndwi(*, green: xr.DataArray, nir: xr.DataArray) -> xr.DataArray:
    """Normalized difference water index (McFeeters, open water), float32 in [-1, 1];
    NaN where green + nir == 0 or nodata."""
    return _normalized_difference(green, nir)
