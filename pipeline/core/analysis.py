"""The analysis of one batch: one pass of the raster engine per sensor family.

`analyse_indices` computes every index its bands allow, their paletted heatmaps and their
streaming statistics (whole grid, NDVI classes, zones) in ONE pass of window tasks
(`pipeline.core.engine` with the `IndexPass` kernel): each input block is decoded once however
many indices there are, and memory is bounded by the windows in flight, not by the image. The
window results stream into local stages in `workdir` (this process's own temporary folder: the
workers of a `distributed` cluster share no disk with it), which are then encoded into COGs
(`encoding`, DESIGN.md §3.1) and PNG previews. `analyse_thermal` runs the same engine with the
`ThermalPass` kernel, then finds hotspots (their threshold depends on the frame's statistics) in
its local °C stage.

Dagster-free: the caller chooses the scheduler (threads or a distributed client), the encoding,
and uploads the files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import rioxarray

from pipeline.core.cog import CogEncoding, GridSpec
from pipeline.core.engine import OutputFile, publish, run_windows
from pipeline.core.errors import NoValidData
from pipeline.core.grid import DEFAULT_MAX_PIXELS, Grid
from pipeline.core.index_pass import IndexPass, ThermalPass, as_lazy_stats
from pipeline.core.mosaic import REFLECTANCE_RANGE, ImageSource, count_out_of_range, mosaic
from pipeline.core.registry import (
    BUILTIN_REGISTRY,
    INDICES,
    THERMAL_SCALE,
    IndexDef,
    Registry,
)
from pipeline.core.stats import (
    Bins,
    LazyStats,
    finalize,
    finalize_thermal,
    finalize_zone,
    zone_area_m2,
    zone_classes,
    zone_valid_area_m2,
)
from pipeline.core.thermal import calibration, find_hotspots, hotspot_threshold, thermal_bins
from pipeline.core.values import Histogram  # re-exported: the report's histogram bars
from pipeline.core.zones import load_zones

Log = Callable[[str], None]
BIN_WIDTH = 0.001  # index units: percentiles within 0.001 (DESIGN.md asks 0.005)
THERMAL_RANGE_C = (-60.0, 160.0)  # histogram range; values outside are still exact in min/max
THERMAL_BIN_C = 0.01
HISTOGRAM_BARS = 40  # bars of the report's histogram charts, over the heatmap scale
MAX_BINS = 20_000  # per index: bounds the window tables of an index with a wide custom scale


def _quiet(_: str) -> None:
    pass


@dataclass
class IndexResult:
    name: str
    stats: dict[str, Any]  # DESIGN.md §3 keys (+ classes for ndvi)
    histogram: Histogram
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)  # zone -> mean/p10/p50/p90/valid_area_m2


@dataclass
class IndexAnalysis:
    grid: Grid
    indices: dict[str, IndexResult]
    files: list[OutputFile]
    zone_areas_m2: dict[str, float]
    seconds: float
    # per file: optical values masked as reflectance outside [-1, 10] or not finite (DESIGN.md §2)
    masked_values: dict[str, int] = field(default_factory=dict)
    encoding: dict[str, Any] = field(default_factory=dict)  # summary.json artifacts_encoding


@dataclass
class ThermalAnalysis:
    grid: Grid
    stats: dict[str, Any]  # mean_c, min_c, max_c, p90_c, hotspot_threshold_c, hotspot_area_m2, hotspots
    histogram: Histogram
    files: list[OutputFile]
    zones: dict[str, dict[str, Any]]  # zone name -> mean_c, max_c
    zone_areas_m2: dict[str, float]
    seconds: float
    encoding: dict[str, Any] = field(default_factory=dict)  # summary.json artifacts_encoding


def histogram_bins(index: IndexDef) -> Bins:
    """Histogram range and bin count for an index: its value range widened to at least
    [-1.5, 1.5], unbounded indices (evi, vari) to [-5, 5]; bins of BIN_WIDTH.

    A custom index (no value range) gets its heatmap scale widened by twice its span on each
    side, at least [-1.5, 1.5], in at most MAX_BINS bins (a ratio index such as nir / red,
    scale 0..10, then has bins of 0.0025; beyond a span of 20 they are wider than the
    0.005 DESIGN.md allows percentiles to be off)."""
    if index.value_range is None:
        span = index.scale.vmax - index.scale.vmin
        lo, hi = min(index.scale.vmin - 2 * span, -1.5), max(index.scale.vmax + 2 * span, 1.5)
    else:
        lo, hi = index.value_range
        lo, hi = min(lo, -1.5), max(hi, 1.5)
    if index.name in ("evi", "vari") and not index.custom:
        lo, hi = -5.0, 5.0
    return Bins(lo=lo, hi=hi, bins=min(int(round((hi - lo) / BIN_WIDTH)), MAX_BINS))


def coarse_histogram(parts: LazyStats, *, vmin: float, vmax: float,
                     bars: int = HISTOGRAM_BARS) -> Histogram:
    """Re-bin the computed fine histogram into `bars` bars over [vmin, vmax]; values beyond the
    scale (including under/overflow) are counted in the end bars, as the heatmap clips them."""
    row = np.asarray(parts.sums)[0]
    fine = row[6:6 + parts.bins]
    centres = parts.lo + (np.arange(parts.bins) + 0.5) * (parts.hi - parts.lo) / parts.bins
    index = np.clip(((centres - vmin) / (vmax - vmin) * bars).astype(int), 0, bars - 1)
    counts = np.bincount(index, weights=fine, minlength=bars)
    counts[0] += row[4]
    counts[-1] += row[5]
    edges = np.linspace(vmin, vmax, bars + 1)
    return Histogram(edges=[float(e) for e in edges], counts=[int(round(c)) for c in counts])


def _grid_spec(grid: Grid) -> GridSpec:
    return GridSpec(crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height)


def _no_valid_data(sources: Sequence[ImageSource], family: str,
                   masked: dict[str, int] | None = None) -> NoValidData:
    """Raised after the one pass and before any file is published: no heatmap of nothing."""
    lo, hi = REFLECTANCE_RANGE
    range_note = (f", or its reflectance (DN × reflectance_scale) is outside [{lo:g}, {hi:g}]: "
                  f"{sum(masked.values()):,} such values; check reflectance_scale in "
                  "manifest.json (e.g. 0.0001 for uint16 digital numbers)"
                  if masked and any(masked.values()) else "")
    return NoValidData(
        f"holds no valid pixel in its {family} bands (every pixel is the nodata value, alpha 0 "
        f"or NaN{range_note}); export the image again with its data, or check its nodata value",
        file=", ".join(s.name for s in sources))


def analyse_indices(
    *,
    sources: Sequence[ImageSource],
    reflectance_scale: float,
    workdir: Path,
    zones_geojson: bytes | None = None,
    zones_name: str = "zones",
    chunks: int = 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    encoding: CogEncoding = CogEncoding(),
    log: Log = _quiet,
    registry: Registry = BUILTIN_REGISTRY,
) -> IndexAnalysis:
    """Every index of `registry` the optical `sources` allow: COGs, heatmaps, previews and
    statistics."""
    started = time.monotonic()
    m = mosaic(sources=sources, reflectance_scale=reflectance_scale, chunks=chunks,
               max_pixels=max_pixels)
    grid = m.grid
    defs = registry.available(m.bands)
    if not defs:
        from pipeline.core.errors import UnknownBands

        raise UnknownBands(
            f"the batch has bands {sorted(m.bands)}, which allow no index; an index needs at least "
            "red + nir (ndvi), green + nir (ndwi) or green + red + blue (vari)",
        )
    zones = load_zones(zones_geojson, name=zones_name, grid=grid) if zones_geojson else []
    log(f"Mosaic: {len(sources)} image(s), bands {', '.join(m.bands)} on a {grid.width} × "
        f"{grid.height} grid ({grid.crs.to_string()}), chunks of {chunks}²; "
        f"indices: {', '.join(d.name for d in defs)}; {len(zones)} zone(s)")

    bins = {index.name: histogram_bins(index) for index in defs}
    plan = IndexPass(reader=m.window_reader(), indices=tuple(d.name for d in defs), bins=bins,
                     definitions={d.name: d for d in defs},
                     zones=tuple(z.geometry for z in zones),
                     transform=tuple(grid.transform)[:6])
    masked_lazy = count_out_of_range(sources=sources, reflectance_scale=reflectance_scale,
                                     chunks=max(chunks, 2048))
    tables, builders = run_windows(plan, grid=_grid_spec(grid), chunks=chunks, workdir=workdir,
                                 encoding=encoding, label="Indices", log=log)
    (masked,) = dask.compute(masked_lazy)  # reads only files whose DNs may leave the range
    lo, hi = REFLECTANCE_RANGE
    for name, count in masked.items():
        if count:
            log(f"{name}: {count:,} band values are not a reflectance (DN × {reflectance_scale:g} "
                f"not finite or outside [{lo:g}, {hi:g}], e.g. an undeclared nodata sentinel) "
                "and were treated as nodata")
    computed = {name: as_lazy_stats(tables[name], bins=bins[name]) for name in tables}

    pixel_area = grid.pixel_area_m2
    results: dict[str, IndexResult] = {}
    for index in defs:
        p = computed[index.name]
        classes = [(c.name, c.lower, c.upper) for c in index.classes] or None
        stats = finalize(p, grid_pixels=grid.width * grid.height, pixel_area_m2=pixel_area,
                         classes=classes)
        zone_stats = {z.name: {**finalize_zone(p, label=i + 1),
                               "valid_area_m2": zone_valid_area_m2(p, label=i + 1,
                                                                   pixel_area_m2=pixel_area),
                               **({"classes": zone_classes(p, label=i + 1, classes=classes,
                                                           pixel_area_m2=pixel_area)}
                                  if classes else {})}
                      for i, z in enumerate(zones)}
        results[index.name] = IndexResult(
            name=index.name, stats=stats, zones=zone_stats,
            histogram=coarse_histogram(p, vmin=index.scale.vmin, vmax=index.scale.vmax))
    if all(r.stats["valid_fraction"] == 0 for r in results.values()):
        raise _no_valid_data(sources, "optical", masked)
    first = computed[defs[0].name]
    # a zone without any valid pixel (a field not flown that day) has area 0 (DESIGN.md §2)
    zone_areas = {z.name: zone_area_m2(first, label=i + 1, pixel_area_m2=pixel_area)
                  if any(r.zones[z.name]["mean"] is not None for r in results.values()) else 0.0
                  for i, z in enumerate(zones)}
    for name, area in zone_areas.items():
        if area == 0.0:
            log(f"Zone {name!r}: no valid pixel in this batch (not flown); kept with area 0 and "
                "no statistics")
    files = publish(builders, log=log)
    return IndexAnalysis(grid=grid, indices=results, files=files, zone_areas_m2=zone_areas,
                         seconds=time.monotonic() - started, masked_values=dict(masked),
                         encoding=encoding.summary())


def analyse_thermal(
    *,
    sources: Sequence[ImageSource],
    unit: str | None,
    scale: float | None,
    offset: float | None,
    workdir: Path,
    zones_geojson: bytes | None = None,
    zones_name: str = "zones",
    chunks: int = 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    encoding: CogEncoding = CogEncoding(),
    log: Log = _quiet,
) -> ThermalAnalysis:
    """Thermal map in °C on its own grid: COG, heatmap, preview, statistics and hotspots."""
    started = time.monotonic()
    m = mosaic(sources=sources, reflectance_scale=1.0, chunks=chunks, max_pixels=max_pixels)
    grid = m.thermal_grid
    k, b = calibration(unit=unit, scale=scale, offset=offset)
    integer_dn = m.thermal_aligned and all(np.issubdtype(np.dtype(d), np.integer)
                                           for d in m.thermal_dtypes)
    lo, hi = THERMAL_RANGE_C
    bins = thermal_bins(k=k, b=b, integer_dn=integer_dn, lo=lo, hi=hi, bin_c=THERMAL_BIN_C)
    zones = load_zones(zones_geojson, name=zones_name, grid=grid) if zones_geojson else []
    plan = ThermalPass(reader=m.thermal_window_reader(), k=k, b=b, scale=THERMAL_SCALE,
                       bins=bins, zones=tuple(z.geometry for z in zones),
                       transform=tuple(grid.transform)[:6])
    log(f"Thermal: {len(sources)} image(s) on a {grid.width} × {grid.height} grid "
        f"({grid.crs.to_string()}), °C = DN × {k:g} + {b:g}"
        f"{', exact percentiles (integer DN)' if bins.exact else ''}")
    tables, builders = run_windows(plan, grid=_grid_spec(grid), chunks=chunks, workdir=workdir,
                                 encoding=encoding, label="Thermal", log=log)
    p = as_lazy_stats(tables["thermal"], bins=bins)

    whole = finalize(p, grid_pixels=grid.width * grid.height, pixel_area_m2=grid.pixel_area_m2)
    if whole["valid_fraction"] == 0:
        raise _no_valid_data(sources, "thermal")
    threshold = hotspot_threshold(whole)
    files = publish(builders, log=log)
    # hotspots from this process's own °C COG, on local threads (no worker can see the file)
    celsius = next(f.path for f in files if f.object_name == "thermal_c.tif")
    stage = rioxarray.open_rasterio(celsius, chunks=chunks, lock=False,
                                    masked=False).squeeze("band", drop=True)
    with dask.config.set(scheduler="threads"):
        hotspots = find_hotspots(stage, threshold=threshold, grid=grid)
    stats = {**finalize_thermal(p),
             "hotspot_threshold_c": threshold if np.isfinite(threshold) else None,
             "hotspot_area_m2": float(sum(h.area_m2 for h in hotspots)),
             "hotspots": [h.as_dict() for h in hotspots]}
    log(f"Thermal: threshold {threshold:.2f} °C, {len(hotspots)} hotspot(s), "
        f"{stats['hotspot_area_m2']:.1f} m²")
    zone_stats = {}
    for i, z in enumerate(zones):
        t = finalize_thermal(p, label=i + 1)
        zone_stats[z.name] = {"mean_c": t["mean_c"], "max_c": t["max_c"]}
    zone_areas = {z.name: zone_area_m2(p, label=i + 1, pixel_area_m2=grid.pixel_area_m2)
                  if zone_stats[z.name]["mean_c"] is not None else 0.0 for i, z in enumerate(zones)}
    return ThermalAnalysis(
        grid=grid, stats=stats, files=files, zones=zone_stats, zone_areas_m2=zone_areas,
        seconds=time.monotonic() - started, encoding=encoding.summary(),
        histogram=coarse_histogram(p, vmin=THERMAL_SCALE.vmin, vmax=THERMAL_SCALE.vmax))


__all__ = ["INDICES", "IndexAnalysis", "OutputFile", "ThermalAnalysis", "analyse_indices",
           "analyse_thermal"]
