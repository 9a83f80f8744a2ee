"""The one raster engine: window tasks that compute and compress their own tiles, then COGs.

Every raster family (indices, thermal, change) is a *kernel*: a small picklable object whose
`window(rows, cols)` reads its inputs for one grid window (one open per input file), computes
every output block (float32 values, paletted heatmap indices) and the window's statistics
tables, and returns them. `run_windows` submits one task per window to where the work runs --
threads of this process, or the workers of a `distributed` cluster (the default client, e.g.
`DaskResource.session`) -- keeping a bounded number in flight. The task also compresses the
window's COG tiles, of level 0 and of the overview levels the window covers whole, with GDAL's
encoders (`pipeline.core.cog_tiles`), so the encode -- most of the cost (bench/RESULTS.md) --
runs where the window was computed, in parallel with the other windows. Only compressed tiles
(and a small block of the next overview level) travel back; THIS process spools them into a
`CogBuilder` per output (level 0 straight into the file that becomes the COG). Workers need
nothing but the inputs (object-store reads): no disk is shared between processes (DESIGN.md §5),
and memory is bounded by the windows in flight, not by the image. `publish` then encodes the
small low overview levels and assembles every COG (and a PNG preview per heatmap).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dask
import numpy as np
import rasterio

from pipeline.core.cog import CogEncoding, CogProfile, GridSpec, Kind
from pipeline.core.cog_tiles import CogBuilder, Tiles, encode_levels, level_shapes, tiled_levels
from pipeline.core.preview import png_preview
from pipeline.core.ramps import Scale

Log = Callable[[str], None]
PROGRESS_EVERY_S = 5.0
IN_FLIGHT_PER_THREAD = 2
HOLD_MAX_BYTES = 256 << 20  # compressed tiles of windows that finished ahead of an older one
# GDAL's block cache while a window reads its inputs. Each input block is decoded for one window
# only, so a cache buys nothing; GDAL's default (5 % of RAM) let the run worker's RSS grow by the
# decoded input, ~+150 MB over a run at 8192² (bench/RESULTS.md).
WINDOW_GDAL_CACHEMAX_MB = 32


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


def _trimmer() -> Callable[[], object]:
    """glibc's malloc_trim(0), or a no-op elsewhere (musl, macOS)."""
    try:
        import ctypes

        return functools.partial(ctypes.CDLL("libc.so.6").malloc_trim, 0)
    except (OSError, AttributeError):
        return lambda: None


_release_freed_memory = _trimmer()
"""Hand the pages of freed window arrays back to the OS. Window tasks allocate and free
megabytes per block on several threads; glibc keeps those in per-thread arenas, and the run
worker's RSS crept up by ~50-100 MB over a run without this (bench/RESULTS.md)."""
TRIM_EVERY = 16  # windows; after every window it cost 15 % of the time at 16384² (re-faulted pages)


def _run_window(kernel: WindowKernel, rows: tuple[int, int], cols: tuple[int, int],
                profiles: Mapping[str, CogProfile], levels: int, last_level: int
                ) -> tuple[dict[str, tuple[Tiles, np.ndarray | None]], dict[str, np.ndarray]]:
    """One window task: the kernel's blocks, compressed into the tiles of `levels` levels."""
    with rasterio.Env(GDAL_CACHEMAX=WINDOW_GDAL_CACHEMAX_MB * 1024 * 1024):
        blocks, tables = kernel.window(rows, cols)
    encoded = {}
    for name, block in blocks.items():
        if levels:
            encoded[name] = encode_levels(block, profile=profiles[name], level=0, row0=rows[0],
                                          col0=cols[0], count=levels, last_level=last_level)
        else:  # windows off the tile grid: the block itself, encoded by the run worker
            encoded[name] = ([], block)
    return encoded, tables


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
                                                                      dict[str, CogBuilder]]:
    """Run `kernel` over every window of `grid`; returns (summed tables, COG builders by layer).

    Windows run on the current dask setup (threads, or the default `distributed` client) with
    at most IN_FLIGHT_PER_THREAD per thread in flight, each compressing its own tiles; the tiles
    are spooled under `workdir` as they arrive. Progress (windows done / total, MP/s) goes to
    `log` every PROGRESS_EVERY_S seconds. `publish` turns the builders into files.
    """
    todo = list(windows((grid.height, grid.width), chunks))
    profiles = {layer.name: encoding.profile(layer.kind) for layer in kernel.layers}
    levels = tiled_levels(chunks)
    last_level = len(level_shapes(width=grid.width, height=grid.height)) - 1
    builders: dict[str, CogBuilder] = {}
    try:  # a builder that fails to open (or no executor) closes the builders opened before
        for layer in kernel.layers:
            builders[layer.name] = CogBuilder(layer.name, workdir=workdir, grid=grid,
                                              profile=profiles[layer.name], scale=layer.scale,
                                              first_low_level=levels)
        executor, threads, where, owned = _executor()
    except BaseException:
        for builder in builders.values():
            builder.close()
        raise
    total_px = grid.width * grid.height
    tables: dict[str, np.ndarray] | None = None
    t0 = last = time.monotonic()
    done = done_px = 0
    pending = {}
    log(f"{label}: {len(todo)} window(s) of {chunks}² over {grid.width} × {grid.height} "
        f"({total_px / 1e6:.1f} MP) on {where}")
    try:
        # Results are taken in window order: tables (float sums do not commute bit for bit) and
        # tiles (the COG's bytes follow the order tiles are spooled), so statistics and files
        # are the same on any scheduler, run after run. Submission stays within a bounded
        # distance of the oldest window not yet taken, and stops while the tiles held back
        # pass HOLD_MAX_BYTES, which bounds what waits for a slow window.
        pending: dict[cf.Future, int] = {}
        held: dict[int, tuple[dict, dict[str, np.ndarray], int]] = {}
        held_bytes = 0
        limit = max(1, IN_FLIGHT_PER_THREAD * threads)
        submitted = summed = 0
        while summed < len(todo):
            while (submitted < len(todo) and len(pending) < limit
                   and submitted < summed + 4 * limit and held_bytes < HOLD_MAX_BYTES):
                rows, cols = todo[submitted]
                pending[executor.submit(_run_window, kernel, rows, cols, profiles, levels,
                                        last_level)] = submitted
                submitted += 1
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                encoded, table = future.result()
                size = sum(len(t[3]) for tiles, _ in encoded.values() for t in tiles)
                held[i] = (encoded, table, size)
                held_bytes += size
                rows, cols = todo[i]
                done += 1
                done_px += (rows[1] - rows[0]) * (cols[1] - cols[0])
            while summed in held:
                encoded, table, size = held.pop(summed)
                rows, cols = todo[summed]
                for name, (tiles, low) in encoded.items():
                    builders[name].add(tiles, low, rows=rows, cols=cols)
                del encoded
                held_bytes -= size
                tables = combine_tables(tables, table)
                summed += 1
                if summed % TRIM_EVERY == 0:
                    _release_freed_memory()
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S and done < len(todo):
                last = now
                log(f"{label}: {done}/{len(todo)} windows, {done_px / 1e6:.1f} MP, "
                    f"{done_px / 1e6 / (now - t0):.1f} MP/s")
    except BaseException:
        for future in pending:
            future.cancel()
        for builder in builders.values():
            builder.close()
        raise
    finally:
        if owned:
            executor.shutdown(wait=True, cancel_futures=True)
    seconds = time.monotonic() - t0
    log(f"{label}: {done}/{len(todo)} windows in {seconds:.1f} s "
        f"({total_px / 1e6 / max(seconds, 1e-9):.1f} MP/s)")
    return tables or {}, builders


def _publish_one(builder: CogBuilder, threads: int, log: Log) -> list[OutputFile]:
    t0 = time.monotonic()
    cog = builder.finish(threads=threads)
    files = [OutputFile(cog.name, cog, builder.profile.kind)]
    if builder.profile.kind == "palette":
        png = cog.with_suffix(".png")
        png_preview(cog, png)
        files.append(OutputFile(png.name, png, "png"))
    log(f"{cog.name}: COG written ({cog.stat().st_size / 1e6:.1f} MB, "
        f"{time.monotonic() - t0:.1f} s to finish)")
    return files


def publish(builders: Mapping[str, CogBuilder], *, log: Log) -> list[OutputFile]:
    """Finish every builder into `<workdir>/<layer>.tif` (encoding its low overview levels, then
    assembling the file) and a PNG preview per paletted heatmap, one builder per thread of this
    process. Files are listed in the builders' order; a failure closes every builder."""
    threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    try:
        with cf.ThreadPoolExecutor(max(1, threads), thread_name_prefix="publish") as pool:
            jobs = [pool.submit(_publish_one, builder, 1, log) for builder in builders.values()]
            return [f for job in jobs for f in job.result()]
    finally:
        for builder in builders.values():
            builder.close()
        _release_freed_memory()  # the step's arrays are gone: later steps start from less
