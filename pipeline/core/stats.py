"""Streaming raster statistics, computed in the same `dask.compute` as everything else.

`lazy_stats` maps every block to a small table (per group: pixels, valid count, sum, sum of squares
in float64, under/overflow counts, a fixed-range histogram, min, max) and reduces the tables with
dask: memory is O(groups × bins), never O(pixels). Group 0 is the whole raster; with `labels`
(zones, see `zones.zone_labels`) group z is the pixels labelled z (1..n_labels).

`finalize` and friends turn the computed tables into the numbers of DESIGN.md §3:
- values are float32 (the COGs' type; float64 input is rounded to float32 first); bins are found
  in float32 arithmetic.
- mean and std (population, ddof=0) from float64 moments: ≈1e-12 relative for field-sized rasters.
- percentiles follow numpy's default ('linear' between order statistics); inside a bin the values
  are taken as evenly spread, so the error is below one bin width (hi - lo) / bins. Choose
  bins so that the width is ≤ 0.005 (e.g. NDVI: lo=-1, hi=1, bins=2000 → 0.001).
  Values below `lo` / above `hi` are counted in under/overflow; a percentile that falls there is
  interpolated between the exact min and `lo` (or `hi` and the exact max): it is then only known
  to lie in that interval. Pick [lo, hi] to cover the physical range (NDVI [-1, 1]) to avoid this.
- class fractions are exact when class bounds fall on bin edges (otherwise linear inside the bin);
  a class whose lower bound is ≤ lo also takes the underflow, one whose upper bound is ≥ hi takes
  the overflow and the value hi itself.
- quantised inputs (e.g. thermal centikelvin: every value is origin + k × quantum) use
  `Bins.quantum`: one bin per possible value, centred on it, so a value is binned exactly despite float rounding
  and every order statistic IS its bin's centre: percentiles are then exact (to float rounding).
Undefined numbers (no valid pixel) are None.

`block_table` is the public per-window kernel (used by the engine's window tasks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

PIXELS, COUNT, SUM, SUMSQ, UNDER, OVER = range(6)
_HIST = 6


@dataclass(frozen=True)
class Bins:
    """A fixed-range histogram: `bins` bins over [lo, hi]; `exact` when every valid value equals
    the centre of its bin (quantised inputs, see `Bins.quantum`)."""

    lo: float
    hi: float
    bins: int
    exact: bool = False

    def __post_init__(self) -> None:
        if not self.hi > self.lo or self.bins < 1:
            raise ValueError(f"need lo < hi and bins >= 1, got lo={self.lo}, hi={self.hi}, "
                             f"bins={self.bins}")

    @classmethod
    def quantum(cls, *, step: float, origin: float, lo: float, hi: float) -> Bins:
        """One bin per value origin + k × step inside [lo, hi], centred on it (exact bins)."""
        k0 = math.floor((lo - origin) / step)
        k1 = math.ceil((hi - origin) / step)
        return cls(lo=origin + (k0 - 0.5) * step, hi=origin + (k1 + 0.5) * step,
                   bins=k1 - k0 + 1, exact=True)


@dataclass(frozen=True)
class LazyStats:
    """Partial statistics: dask arrays before `dask.compute`, numpy arrays after.

    `sums` is (n_labels + 1, 6 + bins) float64 (columns PIXELS, COUNT, SUM, SUMSQ, UNDER, OVER,
    then the histogram); `extrema` is (n_labels + 1, 2): min, max (±inf where no valid value).
    """

    sums: Any
    extrema: Any
    lo: float
    hi: float
    bins: int
    exact: bool = False

    @classmethod
    def from_table(cls, table: np.ndarray, *, bins: Bins) -> LazyStats:
        """Statistics from a summed `block_table` (numpy)."""
        return cls(sums=table[:, :_HIST + bins.bins], extrema=table[:, -2:], lo=bins.lo,
                   hi=bins.hi, bins=bins.bins, exact=bins.exact)


def block_table(values: np.ndarray, labels: np.ndarray | None = None, *, bins: Bins,
                groups: int = 1) -> np.ndarray:
    """The statistics table of one window (see `LazyStats`), (groups, 6 + bins + 2) float64;
    tables of windows add up (min and max columns: minimum and maximum)."""
    return _block_table(values, labels, lo=bins.lo, hi=bins.hi, bins=bins.bins,
                        groups=groups)[0, 0]


def _bin_index(x: np.ndarray, *, lo: float, hi: float, bins: int) -> np.ndarray:
    """Histogram bin of each float32 value in [lo, hi] (float32 arithmetic, no float64 copy)."""
    index = ((x - np.float32(lo)) * np.float32(bins / (hi - lo))).astype(np.int32)
    return np.minimum(index, bins - 1, out=index)


def _whole_table(values: np.ndarray, *, lo: float, hi: float, bins: int) -> np.ndarray:
    """`_block_table` without zones: the same counts and histogram, sums in float64
    accumulators without a float64 copy of the window."""
    v = np.asarray(values, dtype=np.float32).ravel()
    table = np.zeros((1, _HIST + bins + 2), dtype=np.float64)
    table[0, PIXELS] = v.size
    vv = v[~np.isnan(v)]
    table[0, COUNT] = vv.size
    if not vv.size:
        table[0, -2], table[0, -1] = np.inf, -np.inf
        return table[np.newaxis, np.newaxis]
    table[0, SUM] = vv.sum(dtype=np.float64)
    table[0, SUMSQ] = np.einsum("i,i->", vv, vv, dtype=np.float64)
    table[0, -2], table[0, -1] = vmin, vmax = vv.min(), vv.max()
    if vmin < np.float32(lo) or vmax > np.float32(hi):
        under, over = vv < np.float32(lo), vv > np.float32(hi)
        table[0, UNDER], table[0, OVER] = np.count_nonzero(under), np.count_nonzero(over)
        vv = vv[~(under | over)]
    table[0, _HIST:_HIST + bins] = np.bincount(_bin_index(vv, lo=lo, hi=hi, bins=bins),
                                               minlength=bins)
    return table[np.newaxis, np.newaxis]


def _block_table(values: np.ndarray, labels: np.ndarray | None = None, *, lo: float, hi: float,
                 bins: int, groups: int) -> np.ndarray:
    if labels is None and groups == 1:
        return _whole_table(values, lo=lo, hi=hi, bins=bins)
    v32 = np.asarray(values, dtype=np.float32).ravel()
    lab = (np.zeros(v32.shape, dtype=np.int64) if labels is None
           else labels.astype(np.int64, copy=False).ravel())
    lab = np.where((lab >= 0) & (lab < groups), lab, 0)
    valid = ~np.isnan(v32)
    vv32, lv = v32[valid], lab[valid]
    vv = vv32.astype(np.float64)
    table = np.zeros((groups, _HIST + bins + 2), dtype=np.float64)
    table[:, PIXELS] = np.bincount(lab, minlength=groups)
    table[:, COUNT] = np.bincount(lv, minlength=groups)
    table[:, SUM] = np.bincount(lv, weights=vv, minlength=groups)
    table[:, SUMSQ] = np.bincount(lv, weights=vv * vv, minlength=groups)
    under, over = vv32 < np.float32(lo), vv32 > np.float32(hi)
    table[:, UNDER] = np.bincount(lv[under], minlength=groups)
    table[:, OVER] = np.bincount(lv[over], minlength=groups)
    inside = ~(under | over)
    index = _bin_index(vv32[inside], lo=lo, hi=hi, bins=bins)
    key = lv[inside] * bins + index
    table[:, _HIST:_HIST + bins] = np.bincount(key, minlength=groups * bins).reshape(groups, bins)
    mins, maxs = np.full(groups, np.inf), np.full(groups, -np.inf)
    np.minimum.at(mins, lv, vv)
    np.maximum.at(maxs, lv, vv)
    if groups > 1:  # group 0 is every pixel, labelled or not
        table[0, :_HIST + bins] = table[:, :_HIST + bins].sum(axis=0)
        mins[0], maxs[0] = mins.min(), maxs.max()
    table[:, -2], table[:, -1] = mins, maxs
    return table[np.newaxis, np.newaxis]


def lazy_stats(da: xr.DataArray, *, lo: float, hi: float, bins: int,
               labels: xr.DataArray | None = None, n_labels: int = 0) -> LazyStats:
    """Partial statistics of `da` (2-D, NaN = nodata) as dask arrays; see the module docstring."""
    if not hi > lo or bins < 1:
        raise ValueError(f"need lo < hi and bins >= 1, got lo={lo}, hi={hi}, bins={bins}")
    data = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(da.data)
    groups = int(n_labels) + 1
    args = [data]
    if labels is not None:
        lab = labels.data if isinstance(labels.data, dsa.Array) else dsa.from_array(labels.data)
        if lab.shape != data.shape:
            raise ValueError(f"labels shape {lab.shape} differs from the raster's {data.shape}")
        args.append(lab.rechunk(data.chunks))
    width = _HIST + bins + 2
    tables = dsa.map_blocks(
        _block_table, *args, lo=float(lo), hi=float(hi), bins=int(bins), groups=groups,
        new_axis=[2, 3], chunks=(1, 1, groups, width), dtype=np.float64,
        meta=np.empty((0, 0, 0, 0), dtype=np.float64),
    )
    sums = tables[:, :, :, :_HIST + bins].sum(axis=(0, 1))
    extrema = dsa.stack([tables[:, :, :, -2].min(axis=(0, 1)),
                         tables[:, :, :, -1].max(axis=(0, 1))], axis=1)
    return LazyStats(sums=sums, extrema=extrema, lo=float(lo), hi=float(hi), bins=int(bins))


def _segments(parts: LazyStats, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts and [start, end) of the ordered segments: underflow, bins..., overflow."""
    row = np.asarray(parts.sums)[group]
    vmin, vmax = (float(v) for v in np.asarray(parts.extrema)[group])
    edges = np.linspace(parts.lo, parts.hi, parts.bins + 1)
    counts = np.concatenate([[row[UNDER]], row[_HIST:_HIST + parts.bins], [row[OVER]]])
    starts = np.concatenate([[vmin], edges[:-1], [parts.hi]])
    ends = np.concatenate([[parts.lo], edges[1:], [vmax]])
    return counts, starts, ends


def _percentiles(parts: LazyStats, group: int, qs: Sequence[float]) -> list[float | None]:
    counts, starts, ends = _segments(parts, group)
    n = counts.sum()
    if n <= 0:
        return [None for _ in qs]
    vmin, vmax = (float(v) for v in np.asarray(parts.extrema)[group])
    cum = np.cumsum(counts)

    def order_statistic(k: int) -> float:  # estimated k-th smallest value (0-based)
        s = min(int(np.searchsorted(cum, k, side="right")), len(counts) - 1)
        if parts.exact and 0 < s < len(counts) - 1:  # a bin whose values all equal its centre
            return float((starts[s] + ends[s]) / 2)
        local = (k - (cum[s] - counts[s]) + 0.5) / counts[s] if counts[s] else 0.5
        return float(starts[s] + min(max(local, 0.0), 1.0) * (ends[s] - starts[s]))

    out: list[float | None] = []
    for q in qs:  # numpy's 'linear' definition between the two neighbouring order statistics
        rank = q * (n - 1)
        k = int(math.floor(rank))
        low = order_statistic(k)
        value = low + (rank - k) * (order_statistic(min(k + 1, int(n) - 1)) - low)
        out.append(float(min(max(value, vmin), vmax)))
    return out


def _below(parts: LazyStats, group: int, x: float) -> float:
    """Estimated number of valid values < x (exact at bin edges)."""
    row = np.asarray(parts.sums)[group]
    if x <= parts.lo:
        return 0.0 if x < parts.lo else float(row[UNDER])
    if x >= parts.hi:
        return float(row[UNDER] + row[_HIST:_HIST + parts.bins].sum())
    position = (x - parts.lo) / (parts.hi - parts.lo) * parts.bins
    k = int(math.floor(position))
    hist = row[_HIST:_HIST + parts.bins]
    return float(row[UNDER] + hist[:k].sum() + (position - k) * hist[k])


def _moments(parts: LazyStats, group: int) -> tuple[float, float | None, float | None]:
    row = np.asarray(parts.sums)[group]
    n = float(row[COUNT])
    if n <= 0:
        return 0.0, None, None
    mean = row[SUM] / n
    mean_sq = row[SUMSQ] / n
    var = mean_sq - mean * mean
    # below the float64 rounding noise of E[x²] - mean² the variance is zero (constant data)
    var = var if var > 8 * np.finfo(np.float64).eps * mean_sq else 0.0
    return n, float(mean), float(math.sqrt(var))


def finalize(parts: LazyStats, *, grid_pixels: int, pixel_area_m2: float,
             classes: Sequence[Mapping[str, Any] | tuple[str, float, float]] | None = None,
             ) -> dict[str, Any]:
    """The index statistics of DESIGN.md §3 for the whole raster (group 0).

    Keys: mean, std, min, max, p10, p50, p90, valid_fraction, valid_area_m2, and `classes`
    ([{name, lower, upper, fraction, area_m2}], fraction of valid pixels) when class bounds are
    given as (name, lower, upper) tuples or {name, lower, upper} mappings.
    """
    n, mean, std = _moments(parts, 0)
    vmin, vmax = (float(v) for v in np.asarray(parts.extrema)[0])
    p10, p50, p90 = _percentiles(parts, 0, (0.1, 0.5, 0.9))
    out: dict[str, Any] = {
        "mean": mean, "std": std,
        "min": vmin if n else None, "max": vmax if n else None,
        "p10": p10, "p50": p50, "p90": p90,
        "valid_fraction": n / grid_pixels if grid_pixels else 0.0,
        "valid_area_m2": n * pixel_area_m2,
    }
    if classes is not None:
        out["classes"] = [_class(parts, c, n, pixel_area_m2) for c in classes]
    return out


def zone_classes(parts: LazyStats, *, label: int, pixel_area_m2: float,
                 classes: Sequence[Mapping[str, Any] | tuple[str, float, float]],
                 ) -> list[dict[str, Any]]:
    """The class fractions and areas of zone `label` (1-based), as `finalize`'s `classes`:
    [{name, lower, upper, fraction, area_m2}], fraction of the zone's valid pixels (None when
    the zone has none: a field not flown)."""
    n = float(np.asarray(parts.sums)[label, COUNT])
    out = [_class(parts, c, n, pixel_area_m2, group=label) for c in classes]
    return out if n else [c | {"fraction": None} for c in out]


def _class(parts: LazyStats, spec, n: float, pixel_area_m2: float, *,
           group: int = 0) -> dict[str, Any]:
    name, lower, upper = ((spec["name"], spec["lower"], spec["upper"])
                          if isinstance(spec, Mapping) else spec)
    low = 0.0 if lower <= parts.lo else _below(parts, group, lower)
    high = n if upper >= parts.hi else _below(parts, group, upper)
    count = max(high - low, 0.0) if n else 0.0
    return {"name": name, "lower": float(lower), "upper": float(upper),
            "fraction": count / n if n else 0.0, "area_m2": count * pixel_area_m2}


def finalize_zone(parts: LazyStats, *, label: int) -> dict[str, float | None]:
    """Index statistics of zone `label` (1-based): mean, p10, p50, p90."""
    _, mean, _ = _moments(parts, label)
    p10, p50, p90 = _percentiles(parts, label, (0.1, 0.5, 0.9))
    return {"mean": mean, "p10": p10, "p50": p50, "p90": p90}


def zone_area_m2(parts: LazyStats, *, label: int, pixel_area_m2: float) -> float:
    """Area of zone `label` on the grid (all its pixels, valid or not), in m²."""
    return float(np.asarray(parts.sums)[label, PIXELS]) * pixel_area_m2


def zone_valid_area_m2(parts: LazyStats, *, label: int, pixel_area_m2: float) -> float:
    """Valid area of zone `label` (its pixels with a value), in m²."""
    return float(np.asarray(parts.sums)[label, COUNT]) * pixel_area_m2


def finalize_thermal(parts: LazyStats, *, label: int = 0) -> dict[str, float | None]:
    """Thermal statistics in °C of the whole frame (label 0) or a zone: mean_c, min_c, max_c,
    p90_c (zones use mean_c and max_c)."""
    n, mean, _ = _moments(parts, label)
    vmin, vmax = (float(v) for v in np.asarray(parts.extrema)[label])
    (p90,) = _percentiles(parts, label, (0.9,))
    return {"mean_c": mean, "min_c": vmin if n else None, "max_c": vmax if n else None,
            "p90_c": p90}
