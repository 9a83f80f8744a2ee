"""Small synthetic GeoTIFFs for tests: any CRS, transform, bands, dtype, nodata and descriptions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

UTM33 = "EPSG:32633"


def north_up(*, left: float, top: float, res: float, res_y: float | None = None) -> Affine:
    """A north-up transform with its upper-left corner at (left, top)."""
    return Affine(res, 0.0, left, 0.0, -(res_y if res_y is not None else res), top)


def write_raster(
    path: str | Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM33,
    transform: Affine | None = None,
    nodata: float | None = None,
    dtype: str | None = None,
    descriptions: Sequence[str | None] | None = None,
    tiled: bool = False,
    blocksize: int = 256,
    compress: str | None = None,
) -> Path:
    """Write `data` ((bands, rows, cols) or (rows, cols)) as a GeoTIFF; returns the path.

    `crs=None` and `transform=None` write a file that is not georeferenced.
    """
    path = Path(path)
    array = np.asarray(data)
    if array.ndim == 2:
        array = array[np.newaxis]
    count, height, width = array.shape
    profile = {
        "driver": "GTiff", "count": count, "height": height, "width": width,
        "dtype": dtype or str(array.dtype), "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(profile["dtype"]))
        for i, text in enumerate(descriptions or ()):
            if text is not None:
                dst.set_band_description(i + 1, text)
    return path


def ramp(height: int, width: int, *, lo: float, hi: float, seed: int | None = None) -> np.ndarray:
    """float32 values from lo to hi over the raster (plus uniform noise when `seed` is given)."""
    rows, cols = np.mgrid[0:height, 0:width]
    values = lo + (hi - lo) * (rows * width + cols) / max(height * width - 1, 1)
    if seed is not None:
        values = values + np.random.default_rng(seed).uniform(-0.05, 0.05, values.shape)
    return np.clip(values, lo, hi).astype(np.float32)
