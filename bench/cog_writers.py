"""COG writers compared on one float32 raster (NDVI of the bench input): what §3.1 encodes with.

    PYTHONPATH=.:<odc-geo, tifffile, imagecodecs> .venv/bin/python -m bench.cog_writers --size 4096

1. engine: the production path -- windows written into an uncompressed local `Stage`, then GDAL's
   COG driver (`translate_to_cog`, NUM_THREADS=ALL_CPUS, GDAL_CACHEMAX 128 MB).
2. odc-geo: `odc.geo.cog.save_cog_with_dask` (tifffile + imagecodecs; the same code writes S3
   multipart uploads from dask workers) on a dask array chunked like the COG's 512² blocks,
   threaded scheduler with 2 threads.
Both: ZSTD level 1 + floating-point predictor (TIFF predictor 3), 512² blocks, overviews; the
NDVI is computed once in memory before timing. Median of `--repeat` runs; MP/s of the full-
resolution pixels; the file checked with cog_validate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import rasterio
from rio_cogeo.cogeo import cog_validate

from bench.generate import generate
from pipeline.core.cog import CogEncoding, GridSpec, Stage, translate_to_cog


def _ndvi(path: Path) -> tuple[np.ndarray, GridSpec]:
    with rasterio.open(path) as src:
        raw = src.read()
        grid = GridSpec(src.crs, src.transform, src.width, src.height)
    red, nir = (raw[i].astype(np.float32) * np.float32(1e-4) for i in (2, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    ndvi[raw[0] == 0] = np.nan
    return ndvi.astype(np.float32), grid


def engine(ndvi: np.ndarray, grid: GridSpec, dst: Path) -> None:
    stage = Stage(dst.with_suffix(".stage.tif"), grid=grid,
                  profile=CogEncoding().profile("float32"))
    for r in range(0, grid.height, 1024):
        for c in range(0, grid.width, 1024):
            stage.write(ndvi[r:r + 1024, c:c + 1024], rows=(r, min(r + 1024, grid.height)),
                        cols=(c, min(c + 1024, grid.width)))
    stage.close()
    translate_to_cog(stage.path, dst, profile=stage.profile)
    stage.path.unlink()


def odc_geo(ndvi: np.ndarray, grid: GridSpec, dst: Path) -> None:
    import dask.array as dsa
    from odc.geo.cog import save_cog_with_dask
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import wrap_xr

    gbox = GeoBox((grid.height, grid.width), grid.transform, grid.crs)
    xx = wrap_xr(dsa.from_array(ndvi, chunks=512), gbox, nodata=np.nan)
    with dask.config.set(scheduler="threads", num_workers=2):
        save_cog_with_dask(xx, str(dst), compression="zstd", level=1, predictor=3, blocksize=512,
                           overview_resampling="average").compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ndvi, grid = _ndvi(generate(args.size))
    mp = grid.width * grid.height / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        for name, writer in (("engine (local stage + GDAL COG driver)", engine),
                             ("odc-geo save_cog_with_dask", odc_geo)):
            times = []
            for i in range(args.repeat):
                dst = Path(tmp) / f"{writer.__name__}{i}.tif"
                t0 = time.monotonic()
                with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024):
                    writer(ndvi, grid, dst)
                times.append(time.monotonic() - t0)
                valid = cog_validate(str(dst), quiet=True)[0]
                size = dst.stat().st_size / 2**20
            s = statistics.median(times)
            print(f"| {args.size}² | {name} | {s:.2f} | {mp / s:.1f} | {size:.1f} | {valid} |",
                  flush=True)


if __name__ == "__main__":
    main()
