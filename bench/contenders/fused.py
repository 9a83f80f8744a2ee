"""Prototype (not production code): ours with ONE fused task per chunk -- the fix proposed in
RESULTS.md, measured with the same outputs.

Per 2048² chunk, one task reads all 5 bands in one windowed read, computes the 6 indices
(`pipeline.core.registry.compute` on numpy), their RGBA heatmaps and statistics tables (the
core's block kernels), writes the 12 staged windows and returns only the small tables; a last
task sums the tables. No 16 MB intermediate outlives its task, so memory is per thread, not per
image. Then the same COG translation and PNG previews as `analyse_indices`. Single aligned image
only (what the benchmark feeds); threaded scheduler.
"""

from __future__ import annotations

import os

import numpy as np

from bench.contenders._common import BANDS, REFLECTANCE_SCALE, Phases, parse

CHUNK = int(os.environ.get("BENCH_FUSED_CHUNK", "2048"))  # chunk side, pixels


def _chunk(path, stages, defs, bins, nodata, rows, cols):
    import rasterio
    import xarray as xr
    from rasterio.windows import Window

    from pipeline.core.cog import _GeoTiffTarget
    from pipeline.core.ramps import _colorize_block, lut
    from pipeline.core.registry import compute
    from pipeline.core.stats import _block_table

    (r0, r1), (c0, c1) = rows, cols
    with rasterio.open(path) as ds:
        raw = ds.read(window=Window(c0, r0, c1 - c0, r1 - r0))
    bands = {b: xr.DataArray(np.where(raw[i] == nodata, np.float32(np.nan),
                                      raw[i].astype(np.float32) * np.float32(REFLECTANCE_SCALE)),
                             dims=("y", "x")) for i, b in enumerate(BANDS)}
    tables = {}
    for d in defs:
        values = compute(d, bands).values
        lo, hi, n = bins[d.name]
        tables[d.name] = _block_table(values, lo=lo, hi=hi, bins=n, groups=1)
        rgba = _colorize_block(values, table=lut(d.scale.ramp), vmin=d.scale.vmin,
                               vmax=d.scale.vmax)
        _GeoTiffTarget(str(stages[d.name]), None)[slice(r0, r1), slice(c0, c1)] = values
        _GeoTiffTarget(str(stages[f"{d.name}_heatmap"]), 4)[
            slice(0, 4), slice(r0, r1), slice(c0, c1)] = rgba
    return tables


def _sum(*parts):
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    import dask

    from pipeline.core.analysis import _publish, histogram_bins
    from pipeline.core.cog import _create_stage, _spatial
    from pipeline.core.mosaic import ImageSource, mosaic, open_header
    from pipeline.core.ramps import colorize
    from pipeline.core.registry import available_indices, compute

    phases = Phases()
    source = ImageSource(name=args.input.name, path=str(args.input), bands=BANDS)
    m = mosaic(sources=[source], reflectance_scale=REFLECTANCE_SCALE, chunks=CHUNK)
    nodata = open_header(source).nodata
    defs = available_indices(m.bands)
    stages, staged = {}, {}
    for d in defs:  # create the stage files from the lazy arrays' metadata (never computed)
        values = compute(d, m.bands)
        for name, da, profile in ((d.name, values, "float32"),
                                  (f"{d.name}_heatmap", colorize(values, scale=d.scale), "rgba")):
            stages[name] = args.out / f"{name}.stage.tif"
            staged[name] = (stages[name], profile)
            _create_stage(stages[name], _spatial(da, stages[name]))
    bins = {d.name: histogram_bins(d) for d in defs}
    h, w = m.grid.shape
    tasks = [dask.delayed(_chunk)(str(args.input), stages, defs, bins, nodata,
                                  (r, min(r + CHUNK, h)), (c, min(c + CHUNK, w)))
             for r in range(0, h, CHUNK) for c in range(0, w, CHUNK)]
    with dask.config.set(scheduler="threads"):
        (tables,) = dask.compute(dask.delayed(_sum)(*tasks))
    phases.mark("compute_pass")
    _publish(staged, args.out, print)
    phases.mark("publish")
    ndvi = tables["ndvi"][0, 0, 0]
    phases.done(files=len(list(args.out.iterdir())), ndvi_mean=float(ndvi[2] / ndvi[1]))


if __name__ == "__main__":
    main()
