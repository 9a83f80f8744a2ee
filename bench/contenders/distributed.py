"""Contender: `analyse_indices` on a `distributed` cluster of 2 worker processes (1 thread each).

The cluster (scheduler in this process, workers as child processes, as `dask worker` runs them)
is started before the clock; the engine finds it as the default client, exactly as the run worker
does with DASK_SCHEDULER_ADDRESS. Workers return compressed tiles; this process assembles the
COGs. The peak RSS measured by `bench.run` is the sum over this process and its workers.
"""

from __future__ import annotations

import time

from bench.contenders._common import BANDS, REFLECTANCE_SCALE, Phases, parse


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    t_import = time.monotonic()
    from distributed import Client, LocalCluster

    from pipeline.core.analysis import analyse_indices
    from pipeline.core.mosaic import ImageSource

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        phases = Phases()
        phases.phases["import+cluster"] = round(time.monotonic() - t_import, 3)
        source = ImageSource(name=args.input.name, path=str(args.input), bands=BANDS)
        result = analyse_indices(sources=[source], reflectance_scale=REFLECTANCE_SCALE,
                                 workdir=args.out, log=print)
        phases.mark("analyse_indices")
        phases.done(files=len(result.files), ndvi_mean=result.indices["ndvi"].stats["mean"])


if __name__ == "__main__":
    main()
