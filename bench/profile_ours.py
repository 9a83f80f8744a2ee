"""Where the time of `analyse_indices` goes, step by step (one process).

    python -m bench.profile_ours --size 8192

1. decode: every window of the 5 bands as the engine's kernels read them (`WindowReader`), one
   thread;
2. compute: the `IndexPass` kernel on every window (indices, paletted heatmap blocks,
   statistics tables), one thread, nothing encoded;
3. encode: the tiles of levels 0 and 1 of every block the kernel returned, one thread
   (`cog_tiles.encode_levels`, as a window task does);
4. the engine's pass as production runs it: `engine.run_windows` on 2 threads (compute + encode
   per window task, tiles spooled);
5. `engine.publish`: the low overview levels encoded, every COG assembled, PNG previews.
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
from pipeline.core.cog import CogEncoding, GridSpec
from pipeline.core.cog_tiles import encode_levels, level_shapes
from pipeline.core.engine import publish, run_windows, windows
from pipeline.core.index_pass import IndexPass
from pipeline.core.mosaic import ImageSource, mosaic
from pipeline.core.registry import available_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--chunks", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=0, help="steps 1-3 on the first N only")
    args = parser.parse_args()
    path = generate(args.size)
    source = ImageSource(name=path.name, path=str(path), bands=BANDS)
    work = Path(tempfile.mkdtemp(prefix="profile-", dir=path.parent.parent))
    with dask.config.set(scheduler="threads", num_workers=2), \
            rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024):
        m = mosaic(sources=[source], reflectance_scale=REFLECTANCE_SCALE, chunks=args.chunks)
        reader = m.window_reader()
        todo = list(windows(m.grid.shape, args.chunks))
        sample = todo[:args.windows] if args.windows else todo
        share = len(todo) / len(sample)
        t0 = time.monotonic()
        for rows, cols in sample:
            reader.read(rows, cols)
        print(f"1. decode (one thread): {(time.monotonic() - t0) * share:.1f} s", flush=True)
        defs = available_indices(m.bands)
        plan = IndexPass(reader=reader, indices=tuple(d.name for d in defs),
                         bins={d.name: histogram_bins(d) for d in defs}, zones=(),
                         transform=tuple(m.grid.transform)[:6],
                         definitions={d.name: d for d in defs})
        grid = GridSpec(m.grid.crs, m.grid.transform, m.grid.width, m.grid.height)
        encoding = CogEncoding()
        profiles = {layer.name: encoding.profile(layer.kind) for layer in plan.layers}
        last = len(level_shapes(width=grid.width, height=grid.height)) - 1
        compute = encode = 0.0
        for rows, cols in sample:
            t0 = time.monotonic()
            blocks, _ = plan.window(rows, cols)
            t1 = time.monotonic()
            for name, block in blocks.items():
                encode_levels(block, profile=profiles[name], level=0, row0=rows[0],
                              col0=cols[0], count=2, last_level=last)
            compute, encode = compute + t1 - t0, encode + time.monotonic() - t1
        print(f"2. compute (one thread, incl. decode): {compute * share:.1f} s", flush=True)
        print(f"3. encode levels 0-1 (one thread): {encode * share:.1f} s", flush=True)
        t0 = time.monotonic()
        _, builders = run_windows(plan, grid=grid, chunks=args.chunks, workdir=work,
                                  encoding=encoding, label="pass", log=lambda _: None)
        print(f"4. engine pass (2 threads): {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        publish(builders, log=lambda _: None)
        print(f"5. publish all {len(builders)} COGs + previews: {time.monotonic() - t0:.1f} s",
              flush=True)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
