"""From analysis results to the report model: `Summary` (summary.json) and `ReportContext`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.analysis import IndexAnalysis, ThermalAnalysis
from pipeline.core.grid import Grid
from pipeline.core.mgmt_analysis import ManagementZonesAnalysis
from pipeline.core.registry import BUILTIN_REGISTRY, THERMAL_SCALE, Registry
from pipeline.core.sites import BatchRecord, SiteChange
from pipeline.core.report_maps import outlines_on_grid
from pipeline.core.summary import (
    ArtifactsEncoding,
    ChangeSummary,
    ClassSummary,
    FieldOutline,
    GridInfo,
    Hotspot,
    IgnoredImage,
    IndexInfo,
    IndexSummary,
    ManagementZoneClass,
    ManagementZonesSummary,
    ReportContext,
    SiteSummary,
    Summary,
    ThermalSummary,
    ZoneIndex,
    ZonePartRow,
    ZoneSummary,
    ZoneThermal,
)
from pipeline.core.validation import ValidatedBatch
from pipeline.core.zones import load_zones

_CHANGE_KEYS = ("mean", "p10", "p50", "p90", "gain_area_m2", "loss_area_m2")
_INDEX_KEYS = ("mean", "std", "min", "max", "p10", "p50", "p90", "valid_fraction", "valid_area_m2")


def _grid_info(grid: Grid) -> GridInfo:
    xres, yres = grid.res
    return GridInfo(crs=grid.crs.to_string(), width=grid.width, height=grid.height,
                    pixel_size=(abs(xres), abs(yres)), bounds=tuple(grid.bounds))


def build_summary(
    *,
    batch: ValidatedBatch,
    indices: IndexAnalysis | None,
    thermal: ThermalAnalysis | None,
    artifacts: Mapping[str, str],
    generated_at: datetime,
    code_version: str,
    registry: Registry = BUILTIN_REGISTRY,
    zoning: ManagementZonesAnalysis | None = None,
    site_change: SiteChange | None = None,
) -> Summary:
    """summary.json of a batch, field for field DESIGN.md §3; scales from `registry`."""
    grid = indices.grid if indices is not None else thermal.grid
    index_summaries = {}
    for name, result in (indices.indices if indices else {}).items():
        index_summaries[name] = IndexSummary(
            **{k: result.stats[k] for k in _INDEX_KEYS},
            scale=registry[name].scale,
            classes=[ClassSummary(**c) for c in result.stats.get("classes", [])],
        )
    thermal_summary = None
    if thermal is not None:
        s = thermal.stats
        thermal_summary = ThermalSummary(
            mean_c=s["mean_c"], min_c=s["min_c"], max_c=s["max_c"], p90_c=s["p90_c"],
            hotspot_threshold_c=s["hotspot_threshold_c"], hotspot_area_m2=s["hotspot_area_m2"],
            hotspots=[Hotspot(**h) for h in s["hotspots"]])
    zone_names = list(indices.zone_areas_m2) if indices else list(thermal.zone_areas_m2 if thermal else [])
    zones = []
    for name in zone_names:
        area = indices.zone_areas_m2[name] if indices else thermal.zone_areas_m2[name]
        zone_indices = {i: ZoneIndex(**{k: r.zones[name][k]
                                        for k in ("mean", "p10", "p50", "p90", "classes")
                                        if k in r.zones[name]})
                        for i, r in (indices.indices if indices else {}).items()}
        zone_thermal = ZoneThermal(**thermal.zones[name]) if thermal and name in thermal.zones else None
        canopy = zoning.canopy_cover.get(name) if zoning is not None else None
        zone_change = None
        if site_change is not None and site_change.analysis is not None:
            zone_change = {i: ChangeSummary(**c)
                           for i, c in site_change.analysis.zones.get(name, {}).items()}
        zones.append(ZoneSummary(name=name, area_m2=area, indices=zone_indices,
                                 thermal=zone_thermal, canopy_cover=canopy, change=zone_change))
    site, change = None, {}
    if site_change is not None:
        site = SiteSummary(**site_change.site_fields())
        if site_change.analysis is not None:
            change = {i: ChangeSummary(**{k: c[k] for k in _CHANGE_KEYS})
                      for i, c in site_change.analysis.indices.items()}
    return Summary(batch_id=batch.batch_id, generated_at=generated_at, code_version=code_version,
                   grid=_grid_info(grid), indices=index_summaries, thermal=thermal_summary,
                   zones=zones, site=site, change=change,
                   management_zones=management_zones_summary(zoning),
                   artifacts=dict(artifacts),
                   ignored_images=[IgnoredImage(path=i.path, reason=i.reason)
                                   for i in batch.ignored],
                   artifacts_encoding=ArtifactsEncoding(**(indices or thermal).encoding))


def management_zones_summary(
        zoning: ManagementZonesAnalysis | None) -> ManagementZonesSummary | None:
    """summary.json `management_zones` (DESIGN.md §3.4), or None without zoning."""
    if zoning is None:
        return None
    return ManagementZonesSummary(
        classes=[ManagementZoneClass(zone_class=c.zone_class, area_m2=c.area_m2,
                                     ndvi_mean=c.ndvi_mean, rate=zoning.rate(c.zone_class))
                 for c in zoning.class_stats],
        method=zoning.method, product=zoning.product, unit=zoning.unit)


def print_map(png: Path, dst: Path, *, quality: int = 90) -> Path:
    """The heatmap preview as a JPEG on white (white = no data, as the report's legend says).

    A noisy 1024 px RGBA PNG costs ~1-2 MB; as JPEG it is ~5x smaller, so a report with seven maps
    stays small enough to forward by e-mail. Deterministic: same PNG, same bytes.
    """
    from PIL import Image

    with Image.open(png) as image:
        rgba = image.convert("RGBA")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.getchannel("A"))
    white.save(dst, format="JPEG", quality=quality, optimize=True)
    return dst


def field_outlines(zones_geojson: bytes | None, *, name: str,
                   grids: Mapping[str, Grid | None]) -> dict[str, list[FieldOutline]]:
    """The fields of the zones file on the maps of each grid (in the zones file's order, which is
    summary.json's `zones` order: the fields' numbers on the maps); {} without a zones file."""
    if not zones_geojson:
        return {}
    out = {}
    for key, grid in grids.items():
        if grid is not None:
            zones = load_zones(zones_geojson, name=name, grid=grid)
            out[key] = outlines_on_grid([(z.name, z.geometry) for z in zones],
                                        bounds=tuple(grid.bounds))
    return out


def build_context(
    *,
    batch: ValidatedBatch,
    indices: IndexAnalysis | None,
    thermal: ThermalAnalysis | None,
    maps: Mapping[str, Path],
    registry: Registry = BUILTIN_REGISTRY,
    zoning: ManagementZonesAnalysis | None = None,
    area_unit: str = "ha",
    site_change: SiteChange | None = None,
    site_records: Sequence[BatchRecord] = (),
    zones_geojson: bytes | None = None,
    zones_name: str = "zones",
) -> ReportContext:
    """What the PDF shows beyond summary.json: capture metadata, histograms, the PNG maps
    (keys: index names and "thermal"), what `registry` says about each index, and the fields of
    `zones_geojson` (the manifest's zones file) on the optical and thermal grids' maps."""
    histograms = {name: r.histogram for name, r in (indices.indices if indices else {}).items()}
    if thermal is not None:
        histograms["thermal"] = thermal.histogram
    m = batch.manifest
    captured = m.captured_at
    if captured is not None and captured.tzinfo is None:
        captured = captured.replace(tzinfo=UTC)  # a manifest time without offset is taken as UTC
    previous_means: dict[str, float | None] = {}
    series: dict[str, list] = {}
    if site_change is not None:
        previous = site_change.previous
        for row in previous.rows if previous else ():
            if row.index == "ndvi" and row.zone:
                previous_means[row.zone] = row.mean
        mine = (site_change.captured_at, batch.batch_id)
        earlier = [r for r in site_records if r.batch_id != batch.batch_id and r.order < mine]
        for record in sorted(earlier, key=lambda r: r.order):
            for row in record.rows:
                if row.index == "ndvi" and row.mean is not None:
                    series.setdefault(row.zone, []).append((record.captured_at, row.mean))
        ndvi = indices.indices.get("ndvi") if indices else None
        if ndvi is not None:
            for zone, value in [("", ndvi.stats["mean"]),
                                *((z, s["mean"]) for z, s in ndvi.zones.items())]:
                if value is not None:
                    series.setdefault(zone, []).append((site_change.captured_at, value))
    return ReportContext(
        captured_at=captured, platform=m.platform or "", sensor=m.sensor or "",
        maps=dict(maps), histograms=histograms, area_unit=area_unit,
        masked_values=dict(getattr(indices, "masked_values", None) or {}),
        zone_parts=[ZonePartRow(zone_class=p.zone_class, field=p.field, area_m2=p.area_m2,
                                ndvi_mean=p.ndvi_mean, rate=zoning.rate(p.zone_class))
                    for p in (zoning.parts if zoning else [])],
        zone_colours=list(zoning.colours) if zoning else [],
        zone_notes=list(zoning.notes) if zoning else [],
        zone_index=zoning.index if zoning else "ndvi",
        previous_zone_means=previous_means, site_series=series,
        field_outlines=field_outlines(zones_geojson, name=zones_name,
                                      grids={"grid": indices.grid if indices else None,
                                             "thermal": thermal.grid if thermal else None}),
        thermal_scale=THERMAL_SCALE if thermal is not None else None,
        index_info={name: IndexInfo(long_name=registry[name].long_name,
                                    formula=registry[name].formula,
                                    description=registry[name].description,
                                    custom=registry[name].custom)
                    for name in (indices.indices if indices else {})})
