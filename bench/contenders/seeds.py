"""Contender: the seeds' Celery task -- a full-load numpy script writing ONE NDVI GeoTIFF.

Reads the whole 5-band input into memory (`rasterio .read()`), computes NDVI in float32 with
numpy (NaN where nodata or nir + red == 0) and writes one float32 DEFLATE (predictor 3, 512²
tiles) GeoTIFF: no COG overviews, no heatmap, no statistics. The issue's yardstick: the whole
analysis should cost at most 3x this.
"""

from __future__ import annotations

import numpy as np
import rasterio

from bench.contenders._common import REFLECTANCE_SCALE, Phases, parse


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    phases = Phases()
    with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024), rasterio.open(args.input) as src:
        raw = src.read()
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
                   "dtype": "float32", "crs": src.crs, "transform": src.transform,
                   "nodata": float("nan"), "tiled": True, "blockxsize": 512, "blockysize": 512,
                   "compress": "DEFLATE", "predictor": 3, "bigtiff": "IF_SAFER"}
        nodata = src.nodata
    phases.mark("read")
    red = raw[2].astype(np.float32) * np.float32(REFLECTANCE_SCALE)
    nir = raw[4].astype(np.float32) * np.float32(REFLECTANCE_SCALE)
    valid = raw[0] != nodata
    del raw
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    ndvi[~valid | ~np.isfinite(ndvi)] = np.nan
    phases.mark("compute")
    with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024), \
            rasterio.open(args.out / "ndvi.tif", "w", **profile) as dst:
        dst.write(ndvi, 1)
    phases.mark("write")
    phases.done(files=1, ndvi_mean=float(np.nanmean(ndvi)))


if __name__ == "__main__":
    main()
