"""Contender 1: `pipeline.core.analysis.analyse_indices` under the threaded scheduler.

Mosaic -> 6 indices -> RGBA heatmaps -> streaming statistics in one dask.compute, then COG
translation and PNG previews (all as in production; GDAL_CACHEMAX is set by the core itself).
"""

from __future__ import annotations

import time

from bench.contenders._common import BANDS, REFLECTANCE_SCALE, Phases, parse


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    t_import = time.monotonic()
    import dask

    from pipeline.core.analysis import analyse_indices
    from pipeline.core.mosaic import ImageSource

    phases = Phases()
    phases.phases["import"] = round(time.monotonic() - t_import, 3)
    source = ImageSource(name=args.input.name, path=str(args.input), bands=BANDS)
    with dask.config.set(scheduler="threads"):
        result = analyse_indices(sources=[source], reflectance_scale=REFLECTANCE_SCALE,
                                 workdir=args.out, log=print)
    phases.mark("analyse_indices")
    phases.done(files=len(result.files),
                ndvi_mean=result.indices["ndvi"].stats["mean"])


if __name__ == "__main__":
    main()
