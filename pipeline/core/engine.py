"""The one raster engine: window tasks whose results stream into local stages, then COGs.

Every raster family (indices, thermal; later change and management zones) is a *kernel*: a small
picklable object whose `window(rows, cols)` reads its inputs for one grid window (one open per
input file), computes every output block (float32 values, paletted heatmap indices) and the
window's statistics tables, and returns them. `run_windows` submits one task per window to where
the work runs -- threads of this process, or the workers of a `distributed` cluster (the default
client, e.g. `DaskResource.session`) -- keeping a bounded number in flight, and writes each
returned block into the `Stage` of its output as it arrives, in THIS process. Workers therefore
need nothing but the inputs (object-store reads): no disk is shared between processes
(DESIGN.md §5), and memory is bounded by the windows in flight, not by the image.
`publish` then encodes every stage into a COG (and a PNG preview per heatmap).

Cost the design was built around (bench/RESULTS.md): the encode of the outputs is most of the
time, so the compute pass is one fused task per window, and the encode is GDAL's multi-threaded
COG driver on an uncompressed local stage.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dask
import numpy as np

from pipeline.core.cog import CogEncoding, GridSpec, Kind, Stage, translate_to_cog
from pipeline.core.preview import png_preview
from pipeline.core.ramps import Scale

Log = Callable[[str], None]
PROGRESS_EVERY_S = 5.0
IN_FLIGHT_PER_THREAD = 2


@dataclass(frozen=True)
class Layer:
    """One raster output of a kernel: object stem (`ndvi`, `ndvi_heatmap`), kind, colour scale."""

    name: str
    kind: Kind
    scale: Scale | None = None


@dataclass(frozen=True)
class OutputFile:
    """A finished local file and the object name it is published under (DESIGN.md §3)."""

    object_name: str  # e.g. "ndvi.tif", "ndvi_heatmap.tif", "ndvi_heatmap.png"
    path: Path
    kind: str  # "float32" | "palette" | "png"


class WindowKernel(Protocol):
    """What `run_windows` runs: picklable, so `distributed` workers can run it."""

    layers: tuple[Layer, ...]

    def window(self, rows: tuple[int, int], cols: tuple[int, int]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """({layer name: block}, {table name: statistics table}) of one grid window."""
        ...


Window = tuple[tuple[int, int], tuple[int, int]]  # (rows, cols) ranges


def windows(shape: tuple[int, int], chunks: int) -> Sequence[Window]:
    """Row and column ranges of the grid's windows, row by row."""
    height, width = shape
    return [((r, min(r + chunks, height)), (c, min(c + chunks, width)))
            for r in range(0, height, chunks) for c in range(0, width, chunks)]


def combine_tables(total: dict[str, np.ndarray] | None,
                   part: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum two statistics tables per name; the last two columns are min and max."""
    if total is None:
        return {name: table.copy() for name, table in part.items()}
    for name, table in part.items():
        acc = total[name]
        acc[:, :-2] += table[:, :-2]
        np.minimum(acc[:, -2], table[:, -2], out=acc[:, -2])
        np.maximum(acc[:, -1], table[:, -1], out=acc[:, -1])
    return total


def _run_window(kernel: WindowKernel, rows: tuple[int, int], cols: tuple[int, int]):
    return kernel.window(rows, cols)


class _Inline(cf.Executor):
    """The synchronous scheduler: every window in this thread (dask scheduler "sync")."""

    def submit(self, fn, /, *args, **kwargs):
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def _executor() -> tuple[cf.Executor, int, str, bool]:
    """Where windows run: (executor, threads, description, owned) for the current dask setup."""
    scheduler = dask.config.get("scheduler", None)
    if scheduler in ("sync", "synchronous", "single-threaded"):
        return _Inline(), 1, "this thread", True
    if scheduler not in ("threads", "threading"):
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None
        if client is not None:
            workers = client.scheduler_info().get("workers", {})
            threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
            return (client.get_executor(pure=False), threads,
                    f"{len(workers)} distributed worker(s)", False)
    threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    return cf.ThreadPoolExecutor(threads, thread_name_prefix="window"), threads, \
        f"{threads} thread(s)", True


def run_windows(kernel: WindowKernel, *, grid: GridSpec, chunks: int, workdir: Path,
                encoding: CogEncoding, label: str, log: Log) -> tuple[dict[str, np.ndarray],
                                                                      dict[str, Stage]]:
    """Run `kernel` over every window of `grid`; returns (summed tables, closed stages by layer).

    Windows run on the current dask setup (threads, or the default `distributed` client) with
    at most IN_FLIGHT_PER_THREAD per thread in flight; their blocks are written into local stages
    under `workdir` as they arrive. Progress (windows done / total, MP/s) goes to `log` every
    PROGRESS_EVERY_S seconds.
    """
    todo = list(windows((grid.height, grid.width), chunks))
    stages: dict[str, Stage] = {}
    try:  # a stage that fails to open (or no executor) closes the stages opened before
        for layer in kernel.layers:
            stages[layer.name] = Stage(workdir / f"{layer.name}.stage.tif", grid=grid,
                                       profile=encoding.profile(layer.kind), scale=layer.scale)
        executor, threads, where, owned = _executor()
    except BaseException:
        for stage in stages.values():
            stage.close()
        raise
    total_px = grid.width * grid.height
    tables: dict[str, np.ndarray] | None = None
    t0 = last = time.monotonic()
    done = done_px = 0
    pending = {}
    log(f"{label}: {len(todo)} window(s) of {chunks}² over {grid.width} × {grid.height} "
        f"({total_px / 1e6:.1f} MP) on {where}")
    try:
        # Tables are summed in window order (float sums do not commute bit for bit), so the
        # statistics are the same on any scheduler; submission stays within a bounded distance
        # of the oldest unsummed window, which bounds the tables held back.
        pending: dict[cf.Future, int] = {}
        held: dict[int, dict[str, np.ndarray]] = {}
        limit = max(1, IN_FLIGHT_PER_THREAD * threads)
        submitted = summed = 0
        while summed < len(todo):
            while (submitted < len(todo) and len(pending) < limit
                   and submitted < summed + 4 * limit):
                rows, cols = todo[submitted]
                pending[executor.submit(_run_window, kernel, rows, cols)] = submitted
                submitted += 1
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                rows, cols = todo[i]
                blocks, held[i] = future.result()
                for name, block in blocks.items():
                    stages[name].write(block, rows=rows, cols=cols)
                done += 1
                done_px += (rows[1] - rows[0]) * (cols[1] - cols[0])
            while summed in held:
                tables = combine_tables(tables, held.pop(summed))
                summed += 1
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S and done < len(todo):
                last = now
                log(f"{label}: {done}/{len(todo)} windows, {done_px / 1e6:.1f} MP, "
                    f"{done_px / 1e6 / (now - t0):.1f} MP/s")
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    finally:
        if owned:
            executor.shutdown(wait=True, cancel_futures=True)
        for stage in stages.values():
            stage.close()
    seconds = time.monotonic() - t0
    log(f"{label}: {done}/{len(todo)} windows in {seconds:.1f} s "
        f"({total_px / 1e6 / max(seconds, 1e-9):.1f} MP/s)")
    return tables or {}, stages


# COGs encoded at once, each with GDAL's NUM_THREADS=ALL_CPUS. Two at a time was 25-40 % faster
# at 4096² on a loaded machine but 40 % slower at 8192² on a quieter one, with +170 MB peak RSS
# (two overview builds share the 128 MB GDAL cache): one at a time (bench/RESULTS.md).
PUBLISH_CONCURRENCY = 1


def _publish_one(name: str, stage: Stage, workdir: Path, keep_stages: bool,
                 log: Log) -> list[OutputFile]:
    t0 = time.monotonic()
    cog = workdir / f"{name}.tif"
    translate_to_cog(stage.path, cog, profile=stage.profile)
    if not keep_stages:
        stage.path.unlink(missing_ok=True)
    files = [OutputFile(f"{name}.tif", cog, stage.profile.kind)]
    if stage.profile.kind == "palette":
        png = workdir / f"{name}.png"
        png_preview(cog, png)
        files.append(OutputFile(f"{name}.png", png, "png"))
    log(f"{name}.tif: COG written ({cog.stat().st_size / 1e6:.1f} MB, "
        f"{time.monotonic() - t0:.1f} s)")
    return files


def publish(stages: Mapping[str, Stage], *, workdir: Path, log: Log,
            keep_stages: bool = False) -> list[OutputFile]:
    """Encode every stage into `<workdir>/<layer>.tif` (its profile), plus a PNG preview per
    paletted heatmap, PUBLISH_CONCURRENCY at a time in this process; stages are removed unless
    `keep_stages`. Files are listed in the stages' order."""
    with cf.ThreadPoolExecutor(PUBLISH_CONCURRENCY, thread_name_prefix="publish") as pool:
        jobs = [pool.submit(_publish_one, name, stage, workdir, keep_stages, log)
                for name, stage in stages.items()]
        return [f for job in jobs for f in job.result()]
