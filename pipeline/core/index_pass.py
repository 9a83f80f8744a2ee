"""The one pass over the batch grid that produces every index: one task per window.

Each task reads all optical bands of its window once (`WindowReader`), computes every index with
the registry's own formulas, their heatmap blocks and statistics tables (whole grid, classes,
zones), writes the staged windows and returns only the small tables; a tree of tasks sums the
tables. No window-sized intermediate outlives its task, so memory is per worker thread, not per
image. (Expressed instead as one dask array expression per output, dask's ordering kept hundreds
of 16 MB band chunks alive at once: 4.1 GB at 16384², measured in bench/RESULTS.md.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from pipeline.core.cog import _GeoTiffTarget
from pipeline.core.mosaic import WindowReader
from pipeline.core.ramps import _colorize_block, lut
from pipeline.core.registry import IndexDef, compute
from pipeline.core.stats import _HIST, LazyStats, _block_table
from pipeline.core.zones import _label_block

FAN_IN = 8  # tables summed per reduction task


@dataclass(frozen=True)
class IndexPass:
    """Everything a window task needs; picklable, so `distributed` workers can run it."""

    reader: WindowReader
    indices: tuple[str, ...]
    bins: Mapping[str, tuple[float, float, int]]  # index -> (lo, hi, bins) of its histogram
    zones: tuple  # shapely geometries in the grid CRS, label i + 1
    transform: tuple  # grid transform[:6]
    stages: Mapping[str, str]  # "<index>" / "<index>_heatmap" -> staged GeoTIFF path
    definitions: Mapping[str, IndexDef]  # the registry's definitions of `indices`

    def window(self, rows: tuple[int, int], cols: tuple[int, int]) -> dict[str, np.ndarray]:
        (r0, r1), (c0, c1) = rows, cols
        bands = {b: xr.DataArray(v, dims=("y", "x")) for b, v in self.reader.read(rows, cols).items()}
        labels = (_label_block(self.zones, self.transform,
                               block_info={None: {"array-location": [rows, cols]}})
                  if self.zones else None)
        tables = {}
        for name in self.indices:
            index = self.definitions[name]
            values = np.asarray(compute(index, bands).values, dtype=np.float32)
            lo, hi, n = self.bins[name]
            tables[name] = _block_table(values, labels, lo=lo, hi=hi, bins=n,
                                        groups=len(self.zones) + 1)[0, 0]
            _GeoTiffTarget(self.stages[name], None)[slice(r0, r1), slice(c0, c1)] = values
            rgba = _colorize_block(values, table=lut(index.scale.ramp), vmin=index.scale.vmin,
                                   vmax=index.scale.vmax)
            _GeoTiffTarget(self.stages[f"{name}_heatmap"], 4)[
                slice(0, 4), slice(r0, r1), slice(c0, c1)] = rgba
        return tables


def _combine(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name in parts[0]:
        stacked = np.stack([p[name] for p in parts])
        table = stacked.sum(axis=0)
        table[:, -2] = stacked[:, :, -2].min(axis=0)
        table[:, -1] = stacked[:, :, -1].max(axis=0)
        out[name] = table
    return out


def lazy_index_pass(plan: IndexPass, *, shape: tuple[int, int], chunks: int):
    """One delayed value: {index: summed table} after every window has been written."""
    level = [dask.delayed(plan.window, pure=True)(rows, cols)
             for rows, cols in windows(shape, chunks)]
    while len(level) > 1:
        level = [dask.delayed(_combine, pure=True)(*level[i:i + FAN_IN])
                 for i in range(0, len(level), FAN_IN)]
    return level[0] if len(level) == 1 else dask.delayed(_combine)(*level)


def as_lazy_stats(table: np.ndarray, *, lo: float, hi: float, bins: int) -> LazyStats:
    """A summed window table as the `LazyStats` that `stats.finalize` reads."""
    return LazyStats(sums=table[:, :_HIST + bins], extrema=table[:, -2:], lo=lo, hi=hi, bins=bins)


def windows(shape: tuple[int, int], chunks: int) -> Sequence[tuple[tuple[int, int], tuple[int, int]]]:
    """Row and column ranges of the grid's windows, row by row."""
    height, width = shape
    return [((r, min(r + chunks, height)), (c, min(c + chunks, width)))
            for r in range(0, height, chunks) for c in range(0, width, chunks)]
