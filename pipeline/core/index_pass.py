"""The window kernels of the engine (`pipeline.core.engine`): indices and thermal.

Each task reads all the bands its kernel needs for its window once (`WindowReader`: one open per
input file), computes every output block -- float32 values and the paletted heatmap index
(`ramps.palette_index`) -- and its statistics tables (whole grid, classes, zones:
`stats.block_table`), and returns them. No window-sized intermediate outlives its task, so memory
is per worker thread, not per image. (Expressed instead as one dask array expression per output,
dask's ordering kept hundreds of 16 MB band chunks alive at once: 4.1 GB at 16384², measured in
bench/RESULTS.md.)

Kernels hold the readers' GDAL options (object-store credentials): their `repr` names only what
they compute, so a failed task's repr in a worker's log carries no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from pipeline.core.engine import Layer
from pipeline.core.mosaic import WindowReader
from pipeline.core.ramps import Scale, palette_index
from pipeline.core.registry import IndexDef, compute
from pipeline.core.stats import Bins, LazyStats, block_table
from pipeline.core.zones import window_labels


def _labels(zones: tuple, transform: tuple, rows, cols) -> np.ndarray | None:
    if not zones:
        return None
    return window_labels(zones, transform=transform, rows=rows, cols=cols)


@dataclass(frozen=True, repr=False)
class IndexPass:
    """Every index of the batch, its heatmap and statistics, per window of the batch grid."""

    reader: WindowReader
    indices: tuple[str, ...]
    bins: Mapping[str, Bins]  # index -> histogram bins
    zones: tuple  # shapely geometries in the grid CRS, label i + 1
    transform: tuple  # grid transform[:6]
    definitions: Mapping[str, IndexDef]  # the registry's definitions of `indices`

    def __repr__(self) -> str:
        return f"IndexPass(indices={self.indices}, zones={len(self.zones)})"

    @property
    def layers(self) -> tuple[Layer, ...]:
        out = []
        for name in self.indices:
            scale = self.definitions[name].scale
            out += [Layer(name, "float32"), Layer(f"{name}_heatmap", "palette", scale)]
        return tuple(out)

    def window(self, rows: tuple[int, int], cols: tuple[int, int]):
        bands = {b: xr.DataArray(v, dims=("y", "x")) for b, v in self.reader.read(rows, cols).items()}
        labels = _labels(self.zones, self.transform, rows, cols)
        blocks, tables = {}, {}
        for name in self.indices:
            index = self.definitions[name]
            values = np.asarray(compute(index, bands).values, dtype=np.float32)
            tables[name] = block_table(values, labels, bins=self.bins[name],
                                       groups=len(self.zones) + 1)
            blocks[name] = values
            blocks[f"{name}_heatmap"] = palette_index(values, vmin=index.scale.vmin,
                                                      vmax=index.scale.vmax)
        return blocks, tables


@dataclass(frozen=True, repr=False)
class ThermalPass:
    """Digital numbers to °C (`thermal.celsius_block`), the heatmap and statistics per window of
    the thermal grid."""

    reader: WindowReader  # band "thermal": raw DN
    k: float  # °C = DN × k + b
    b: float
    scale: Scale
    bins: Bins
    zones: tuple
    transform: tuple

    def __repr__(self) -> str:
        return f"ThermalPass(k={self.k}, b={self.b}, zones={len(self.zones)})"

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (Layer("thermal_c", "float32"), Layer("thermal_heatmap", "palette", self.scale))

    def window(self, rows: tuple[int, int], cols: tuple[int, int]):
        from pipeline.core.thermal import celsius_block

        celsius = celsius_block(self.reader.read(rows, cols)["thermal"], k=self.k, b=self.b)
        labels = _labels(self.zones, self.transform, rows, cols)
        table = block_table(celsius, labels, bins=self.bins, groups=len(self.zones) + 1)
        heat = palette_index(celsius, vmin=self.scale.vmin, vmax=self.scale.vmax)
        return {"thermal_c": celsius, "thermal_heatmap": heat}, {"thermal": table}


def as_lazy_stats(table: np.ndarray, *, bins: Bins) -> LazyStats:
    """A summed window table as the `LazyStats` that `stats.finalize` reads."""
    return LazyStats.from_table(table, bins=bins)
