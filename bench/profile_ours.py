"""Where the time of `analyse_indices` goes, stage by stage (threaded scheduler, one process).

    python -m bench.profile_ours --size 8192

Each line computes a bigger part of the same graph, so the differences are the cost of a stage:
1. decode: the 5 mosaic bands (as `pipeline.core.mosaic` reads them: one band per task);
2. decode, all bands per read: the same pixels read as one (5, y, x) window per chunk -- what a
   mosaic reading all bands of an image at once would pay (pixel-interleaved inputs);
3. + indices + heatmaps + statistics (no writing);
4. + staging (uncompressed tiled GeoTIFFs) = the one `dask.compute` of `analyse_indices`;
5. COG translation of one float32 and one RGBA stage (× 6 for the job) and a PNG preview.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import rasterio
from rasterio.windows import Window

from bench.generate import BANDS, REFLECTANCE_SCALE, generate
from pipeline.core.analysis import histogram_bins
from pipeline.core.cog import stage_rasters, translate_to_cog
from pipeline.core.mosaic import ImageSource, mosaic
from pipeline.core.preview import png_preview
from pipeline.core.ramps import colorize
from pipeline.core.registry import available_indices, compute
from pipeline.core.stats import lazy_stats


def _all_bands(path: str, shape: tuple[int, int], chunks: int) -> dsa.Array:
    def read(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"][1:]
        with rasterio.open(path) as ds:
            raw = ds.read(window=Window(c0, r0, c1 - c0, r1 - r0))
        return np.where(raw == 0, np.nan, raw * np.float32(REFLECTANCE_SCALE)).astype(np.float32)

    return dsa.map_blocks(read, chunks=((5,),) + dsa.core.normalize_chunks((chunks, chunks), shape),
                          dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


def _timed(label: str, *objs) -> float:
    t0 = time.monotonic()
    dask.compute(*objs)
    seconds = time.monotonic() - t0
    print(f"{label}: {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--chunks", type=int, default=2048)
    args = parser.parse_args()
    path = generate(args.size)
    source = ImageSource(name=path.name, path=str(path), bands=BANDS)
    work = Path(tempfile.mkdtemp(prefix="profile-", dir=path.parent.parent))
    with dask.config.set(scheduler="threads"), rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024):
        def graph():
            m = mosaic(sources=[source], reflectance_scale=REFLECTANCE_SCALE, chunks=args.chunks)
            defs = available_indices(m.bands)
            values = {d.name: compute(d, m.bands) for d in defs}
            heat = {d.name: colorize(values[d.name], scale=d.scale) for d in defs}
            stats = []
            for d in defs:
                lo, hi, bins = histogram_bins(d)
                stats.append(lazy_stats(values[d.name], lo=lo, hi=hi, bins=bins).sums)
            return m, defs, values, heat, stats

        m, *_ = graph()
        _timed("1. decode (band per task)", *[b.data.sum() for b in m.bands.values()])
        _timed("2. decode (all bands per read)",
               _all_bands(str(path), m.grid.shape, args.chunks).sum(axis=(1, 2)))
        m, defs, values, heat, stats = graph()
        _timed("3. + indices, heatmaps, statistics", *stats,
               *[h.data.sum(axis=(1, 2)) for h in heat.values()])
        m, defs, values, heat, stats = graph()
        arrays = {}
        for d in defs:
            arrays[work / f"{d.name}.stage.tif"] = values[d.name]
            arrays[work / f"{d.name}_heatmap.stage.tif"] = heat[d.name]
        _timed("4. + staging (= the one compute of analyse_indices)", stage_rasters(arrays), *stats)
        for name, profile in (("ndvi", "float32"), ("ndvi_heatmap", "rgba")):
            t0 = time.monotonic()
            translate_to_cog(work / f"{name}.stage.tif", work / f"{name}.tif", profile=profile)
            print(f"5. COG translate {name} ({profile}): {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        png_preview(work / "ndvi_heatmap.tif", work / "ndvi_heatmap.png")
        print(f"5. PNG preview: {time.monotonic() - t0:.1f} s", flush=True)
    for f in work.iterdir():
        f.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
