"""Thermal: digital numbers to °C, the hotspot threshold, and hotspots as connected warm regions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from scipy import ndimage

from pipeline.core.errors import ManifestError
from pipeline.core.grid import Grid
from pipeline.core.manifest import THERMAL_UNITS
from pipeline.core.stats import Bins
from pipeline.core.values import Hotspot  # re-exported: a connected warm region

_KELVIN = 273.15
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def calibration(*, unit: str | None, scale: float | None,
                offset: float | None) -> tuple[float, float]:
    """(k, b) with °C = DN × k + b.

    Explicit `scale`/`offset` win: °C = DN × scale + offset (missing scale = 1, offset = 0; e.g.
    FLIR Duo Pro R / DJI XT2 TIFF: 0.04, -273.15). Otherwise by `unit`: celsius (default,
    °C = DN), kelvin (°C = DN - 273.15) or centikelvin (radiometric uint16: °C = DN × 0.01 - 273.15).
    """
    if scale is not None or offset is not None:
        return (1.0 if scale is None else float(scale)), (0.0 if offset is None else float(offset))
    if unit in (None, "celsius"):
        return 1.0, 0.0
    if unit == "kelvin":
        return 1.0, -_KELVIN
    if unit == "centikelvin":
        return 0.01, -_KELVIN
    raise ManifestError(f"thermal_unit {unit!r} is not one of {', '.join(THERMAL_UNITS)}; "
                        "use one of them or give thermal_scale and thermal_offset")


def celsius_block(dn: np.ndarray, *, k: float, b: float) -> np.ndarray:
    """The kernel: DN → °C, computed in float64, stored as float32 (NaN stays NaN)."""
    out = dn.astype(np.float64)
    out *= k
    out += b
    return out.astype(np.float32)


def thermal_bins(*, k: float, b: float, integer_dn: bool, lo: float, hi: float,
                 bin_c: float) -> Bins:
    """Histogram bins of the °C statistics over [lo, hi]: when the DNs are integers (radiometric
    cameras: centikelvin, 0.04 K steps) one exact bin per possible value (DN quantum k, origin b),
    so percentiles are exact (DESIGN.md §3.5: within the quantum, not between quanta); otherwise
    bins of `bin_c`."""
    if integer_dn and abs(k) >= bin_c / 2:
        return Bins.quantum(step=abs(k), origin=b, lo=lo, hi=hi)
    return Bins(lo=lo, hi=hi, bins=int(round((hi - lo) / bin_c)))


def to_celsius(dn: xr.DataArray, *, unit: str | None, scale: float | None,
               offset: float | None) -> xr.DataArray:
    """Thermal digital numbers to °C (see `calibration`), float32, NaN where `dn` is NaN; lazy.
    Computed in float64, then stored as float32 (`celsius_block`)."""
    k, b = calibration(unit=unit, scale=scale, offset=offset)
    out = (dn.astype(np.float64) * k + b).astype(np.float32)
    out.attrs = {**dn.attrs, "units": "degC"}
    return out.rename("thermal_c")


def hotspot_threshold(stats: Mapping[str, Any]) -> float:
    """°C above which a pixel is part of a hotspot: max(p90 + 2 °C, mean + 2·std).

    `stats` is `stats.finalize(...)` of the °C raster (keys mean, std, p90).

    Why: a water-stressed crop closes its stomata, loses transpiration cooling and warms 2-5 °C
    (more in hot, dry air) above a well-watered canopy under the same sky (the basis of the crop
    water stress index, Idso et al. 1981; Jackson et al. 1981). The rule is relative to the frame
    itself because uncooled radiometric cameras are only ±5 °C accurate in absolute terms while
    differences inside one frame are good to ~0.1 °C. `p90 + 2 °C` asks a hotspot to be
    physiologically warmer than 90 % of the field, not just the top decile of a uniform field;
    `mean + 2·std` keeps it a statistical outlier when the frame is heterogeneous (soil, roads,
    shade widen the distribution), so the wider of the two margins applies.
    """
    p90, mean, std = stats.get("p90"), stats.get("mean"), stats.get("std")
    if p90 is None or mean is None or std is None:
        return float("nan")
    return float(max(p90 + 2.0, mean + 2.0 * std))


def _block_regions(values: np.ndarray, *, threshold: float, row0: int, col0: int,
                   row_areas: np.ndarray) -> dict[str, np.ndarray]:
    """Label one block; region sums (count, area, row/col of centres, max) and edge labels."""
    with np.errstate(invalid="ignore"):
        mask = values >= threshold
    labels, n = ndimage.label(mask, structure=_EIGHT)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    maxs = np.full(n + 1, -np.inf)
    np.maximum.at(maxs, ids, values[rows, cols].astype(np.float64))
    return {
        "n": np.int64(n),
        "area": np.bincount(ids, weights=row_areas[rows], minlength=n + 1)[1:],
        "row": np.bincount(ids, weights=rows + row0 + 0.5, minlength=n + 1)[1:],
        "col": np.bincount(ids, weights=cols + col0 + 0.5, minlength=n + 1)[1:],
        "count": np.bincount(ids, minlength=n + 1)[1:].astype(np.float64),
        "max": maxs[1:],
        "top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1],
    }


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def _pairs(a: np.ndarray, b: np.ndarray):
    """Label pairs touching across a boundary between lines a and b (8-connectivity)."""
    for shift in (-1, 0, 1):
        if shift < 0:
            x, y = a[-shift:], b[:shift]
        elif shift > 0:
            x, y = a[:-shift], b[shift:]
        else:
            x, y = a, b
        hit = (x > 0) & (y > 0)
        yield from zip(x[hit].tolist(), y[hit].tolist())


def find_hotspots(celsius: xr.DataArray, *, threshold: float, grid: Grid,
                  min_area_m2: float = 1.0) -> list[Hotspot]:
    """Connected regions (8-connectivity) of pixels ≥ threshold, hottest first.

    Out of core: each block is labelled on its own (`scipy.ndimage.label`), only its region sums
    and its four edge lines come back, and labels touching across block edges (diagonals
    included) are merged with union-find. This computes `celsius` (one pass); regions smaller
    than `min_area_m2` are dropped. `grid` is the grid of `celsius` (for centroids and areas).
    """
    if not np.isfinite(threshold):
        return []
    data = celsius.data if isinstance(celsius.data, dsa.Array) else dsa.from_array(celsius.data)
    row_areas = grid.row_areas_m2()
    row_starts = np.cumsum((0,) + data.chunks[0])
    col_starts = np.cumsum((0,) + data.chunks[1])
    blocks = data.to_delayed()
    tasks = [[dask.delayed(_block_regions)(
        blocks[i, j], threshold=float(threshold), row0=int(row_starts[i]), col0=int(col_starts[j]),
        row_areas=row_areas[row_starts[i]:row_starts[i + 1]])
        for j in range(blocks.shape[1])] for i in range(blocks.shape[0])]
    (results,) = dask.compute(tasks)
    # global ids: block-local label l of block k becomes base[k] + l (0 stays background)
    flat = [r for row in results for r in row]
    bases = np.cumsum([0] + [int(r["n"]) for r in flat])
    total = int(bases[-1])
    if total == 0:
        return []
    nj = len(results[0])

    def glob(i: int, j: int, line: np.ndarray) -> np.ndarray:
        base = bases[i * nj + j]
        return np.where(line > 0, line + base, 0)

    parent = np.arange(total + 1)
    for i in range(len(results) - 1):  # horizontal block boundaries, full width
        above = np.concatenate([glob(i, j, results[i][j]["bottom"]) for j in range(nj)])
        below = np.concatenate([glob(i + 1, j, results[i + 1][j]["top"]) for j in range(nj)])
        for a, b in _pairs(above, below):
            parent[_find(parent, a)] = _find(parent, b)
    for j in range(nj - 1):  # vertical block boundaries, full height
        left = np.concatenate([glob(i, j, results[i][j]["right"]) for i in range(len(results))])
        right = np.concatenate([glob(i, j + 1, results[i][j + 1]["left"])
                                for i in range(len(results))])
        for a, b in _pairs(left, right):
            parent[_find(parent, a)] = _find(parent, b)
    roots = np.array([_find(parent, g) for g in range(1, total + 1)])
    sums = {k: np.concatenate([r[k] for r in flat]) for k in ("area", "row", "col", "count", "max")}
    uniq, inverse = np.unique(roots, return_inverse=True)
    merged = {k: np.bincount(inverse, weights=v, minlength=len(uniq))
              for k, v in sums.items() if k != "max"}
    maxs = np.full(len(uniq), -np.inf)
    np.maximum.at(maxs, inverse, sums["max"])
    spots = []
    for k in range(len(uniq)):
        if merged["area"][k] < min_area_m2:
            continue
        row, col = merged["row"][k] / merged["count"][k], merged["col"][k] / merged["count"][k]
        x, y = grid.transform @ (col, row)
        spots.append(Hotspot(centroid=(float(x), float(y)), area_m2=float(merged["area"][k]),
                             max_c=float(maxs[k])))
    return sorted(spots, key=lambda s: (-s.max_c, -s.area_m2))
