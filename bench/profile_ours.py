"""Where the time of `analyse_indices` goes, stage by stage (threaded scheduler, one process).

    python -m bench.profile_ours --size 8192

1. decode: every window of the 5 bands as the engine's kernels read them (`WindowReader`);
2. the engine's compute pass: indices, paletted heatmap blocks and statistics tables per window,
   streamed into the local stages (`engine.run_windows` with the `IndexPass` kernel);
3. COG encode of one float32 and one paletted stage (× the indices for the job) and a PNG
   preview; then all of them as `engine.publish` encodes them.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dask
import rasterio

from bench.generate import BANDS, REFLECTANCE_SCALE, generate
from pipeline.core.analysis import histogram_bins
from pipeline.core.cog import CogEncoding, GridSpec, translate_to_cog
from pipeline.core.engine import publish, run_windows, windows
from pipeline.core.index_pass import IndexPass
from pipeline.core.mosaic import ImageSource, mosaic
from pipeline.core.preview import png_preview
from pipeline.core.registry import available_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--chunks", type=int, default=1024)
    args = parser.parse_args()
    path = generate(args.size)
    source = ImageSource(name=path.name, path=str(path), bands=BANDS)
    work = Path(tempfile.mkdtemp(prefix="profile-", dir=path.parent.parent))
    with dask.config.set(scheduler="threads"), rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024):
        m = mosaic(sources=[source], reflectance_scale=REFLECTANCE_SCALE, chunks=args.chunks)
        reader = m.window_reader()
        t0 = time.monotonic()
        for rows, cols in windows(m.grid.shape, args.chunks):
            reader.read(rows, cols)
        print(f"1. decode (one thread): {time.monotonic() - t0:.1f} s", flush=True)
        defs = available_indices(m.bands)
        plan = IndexPass(reader=reader, indices=tuple(d.name for d in defs),
                         bins={d.name: histogram_bins(d) for d in defs}, zones=(),
                         transform=tuple(m.grid.transform)[:6],
                         definitions={d.name: d for d in defs})
        grid = GridSpec(m.grid.crs, m.grid.transform, m.grid.width, m.grid.height)
        t0 = time.monotonic()
        _, stages = run_windows(plan, grid=grid, chunks=args.chunks, workdir=work,
                                encoding=CogEncoding(), label="pass", log=lambda _: None)
        print(f"2. compute pass (indices, heatmaps, statistics, stages): "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        for name in ("ndvi", "ndvi_heatmap"):
            t0 = time.monotonic()
            translate_to_cog(stages[name].path, work / f"one_{name}.tif",
                             profile=stages[name].profile)
            print(f"3. COG encode {name} ({stages[name].profile.name}): "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        png_preview(work / "one_ndvi_heatmap.tif", work / "one.png")
        print(f"3. PNG preview: {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        publish(stages, workdir=work, log=lambda _: None)
        print(f"3. publish all {len(stages)} COGs + previews: {time.monotonic() - t0:.1f} s",
              flush=True)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
