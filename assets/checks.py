"""Asset checks guarding each stage. The blocking ones gate the report and its distribution."""

import dagster as dg
import rasterio

from assets.failures import final_check
from pipeline.core.analysis import IndexAnalysis, ThermalAnalysis
from pipeline.core.mgmt_analysis import ManagementZonesAnalysis
from pipeline.core.mgmt_zones import polygon_area_tolerance
from pipeline.core.thermal_check import PLAUSIBLE_C
from pipeline.partitions import imagery_batches
from resources.indices import IndexRegistryResource
from resources.io_managers import PublishedObjects
from resources.limits import LimitsResource

# p10 and p90 are estimated within 0.005 (DESIGN.md §3.5 accuracy)
_PERCENTILE_TOLERANCE = 0.005


@dg.asset_check(asset="index_statistics", partitions_def=imagery_batches, blocking=False,
                description="The bulk of every index (p10 to p90: 80 % of its valid pixels) lies "
                            "within the range it really takes over land surfaces (the registry's "
                            "value_range); min and max are reported, not judged, since EVI and "
                            "VARI are unbounded where their denominators near 0.")
def index_values_in_range(context: dg.AssetCheckExecutionContext,
                          index_statistics: IndexAnalysis | None,
                          index_registry: IndexRegistryResource) -> dg.AssetCheckResult:
    if index_statistics is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no optical bands; no index"})
    problems, ranges = [], {}
    registry = index_registry.registry()
    for name, result in index_statistics.indices.items():
        s = result.stats
        ranges[name] = {k: s.get(k) for k in ("min", "p10", "p90", "max")}
        if s.get("p10") is None or name not in registry or registry[name].value_range is None:
            continue  # custom indices declare no range
        lo, hi = registry[name].value_range
        if s["p10"] < lo - _PERCENTILE_TOLERANCE or s["p90"] > hi + _PERCENTILE_TOLERANCE:
            problems.append(f"{name}: p10..p90 is [{s['p10']:.4f}, {s['p90']:.4f}], outside "
                            f"[{lo:g}, {hi:g}] (check reflectance_scale and the band order)")
    return dg.AssetCheckResult(
        passed=not problems, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or "every index's bulk lies within its range",
        metadata={"ranges": dg.MetadataValue.json(ranges),
                  "problems": "; ".join(problems) or "none"})


@dg.asset_check(asset="index_statistics", partitions_def=imagery_batches, blocking=True,
                description="Each index covers at least IMAGERY_MIN_VALID_FRACTION of the grid.")
def index_valid_fraction(context: dg.AssetCheckExecutionContext,
                         index_statistics: IndexAnalysis | None,
                         limits: LimitsResource) -> dg.AssetCheckResult:
    if index_statistics is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no optical bands; no index"})
    fractions = {n: r.stats["valid_fraction"] for n, r in index_statistics.indices.items()}
    low = {n: f for n, f in fractions.items() if f < limits.min_valid_fraction}
    return final_check(context, dg.AssetCheckResult(
        passed=not low,
        metadata={"minimum": limits.min_valid_fraction, "fractions": dg.MetadataValue.json(fractions),
                  "below_minimum": ", ".join(sorted(low)) or "none"}))


@dg.asset_check(asset="index_rasters", partitions_def=imagery_batches, blocking=True,
                description="Every published index raster is a valid COG with a CRS, float32, "
                            "nodata NaN.")
def index_cogs_valid(context: dg.AssetCheckExecutionContext,
                     index_rasters: PublishedObjects) -> dg.AssetCheckResult:
    return final_check(context, _cogs_valid(index_rasters, dtype="float32"))


@dg.asset_check(asset="index_heatmaps", partitions_def=imagery_batches, blocking=True,
                description="Every published heatmap is a valid COG with a CRS: one paletted uint8 "
                "band, nodata 0 (DESIGN.md §3.1).")
def heatmap_cogs_valid(context: dg.AssetCheckExecutionContext,
                       index_heatmaps: PublishedObjects) -> dg.AssetCheckResult:
    return final_check(context, _cogs_valid(index_heatmaps, dtype="uint8", palette=True))


@dg.asset_check(asset="thermal_raster", partitions_def=imagery_batches, blocking=True,
                description="The published thermal raster is a valid COG with a CRS.")
def thermal_cog_valid(context: dg.AssetCheckExecutionContext,
                      thermal_raster: PublishedObjects) -> dg.AssetCheckResult:
    return final_check(context, _cogs_valid(thermal_raster, dtype="float32"))


def _cogs_valid(published: PublishedObjects, *, dtype: str, count: int = 1,
                palette: bool = False) -> dg.AssetCheckResult:
    from rio_cogeo.cogeo import cog_validate

    problems = []
    checked = 0
    with rasterio.Env(**dict(published.gdal_options)):
        for name, obj in sorted(published.objects.items()):
            if not name.endswith(".tif"):
                continue
            checked += 1
            valid, errors, _ = cog_validate(obj.gdal_path, quiet=True)
            if not valid:
                problems.append(f"{name}: not a valid COG ({'; '.join(errors)})")
                continue
            with rasterio.open(obj.gdal_path) as ds:
                if ds.crs is None:
                    problems.append(f"{name}: no CRS")
                if ds.count != count or ds.dtypes[0] != dtype:
                    problems.append(f"{name}: {ds.count} × {ds.dtypes[0]}, expected {count} × {dtype}")
                elif palette and (ds.colorinterp[0].name != "palette" or ds.nodata != 0):
                    problems.append(f"{name}: not paletted with nodata 0 "
                                    f"({ds.colorinterp[0].name}, nodata {ds.nodata})")
    return dg.AssetCheckResult(passed=not problems,
                               metadata={"rasters_checked": checked,
                                         "problems": "; ".join(problems) or "none"})


@dg.asset_check(asset="thermal_statistics", partitions_def=imagery_batches, blocking=False,
                description=f"The bulk of the temperatures (mean and p90) lies within "
                            f"{PLAUSIBLE_C[0]:g} to {PLAUSIBLE_C[1]:g} °C. A wrong thermal_unit is "
                            "refused while the batch is validated, before anything is published "
                            "(pipeline/core/thermal_check.py); this re-states it over every pixel.")
def thermal_plausible(context: dg.AssetCheckExecutionContext,
                      thermal_statistics: ThermalAnalysis | None) -> dg.AssetCheckResult:
    if thermal_statistics is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no thermal band"})
    s = thermal_statistics.stats
    lo, hi = PLAUSIBLE_C
    if s["mean_c"] is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   description="no valid thermal pixel")
    ok = lo <= s["mean_c"] <= hi and lo <= s["p90_c"] <= hi
    text = (f"mean {s['mean_c']:.2f} °C, p90 {s['p90_c']:.2f} °C" + (
        "" if ok else f": outside {lo:g}…{hi:g} °C; check thermal_unit / thermal_scale / "
        "thermal_offset in manifest.json (e.g. centikelvin for radiometric uint16)"))
    return dg.AssetCheckResult(
        passed=ok, severity=dg.AssetCheckSeverity.WARN, description=text,
        metadata={"mean_c": float(s["mean_c"]), "p90_c": float(s["p90_c"]),
                  "min_c": float(s["min_c"]), "max_c": float(s["max_c"])})


@dg.asset_check(asset="management_zones", partitions_def=imagery_batches, blocking=True,
                description="The published management-zone raster is a valid one-band uint8 COG "
                            "with a CRS.")
def management_zones_cog_valid(context: dg.AssetCheckExecutionContext,
                               management_zones: PublishedObjects) -> dg.AssetCheckResult:
    return final_check(context, _cogs_valid(management_zones, dtype="uint8"))


# Classes and features count the same valid pixels as the index statistics (every classed pixel
# belongs to a feature): equal but for float rounding. Polygons are drawn on the working cells
# (a cell when at least half valid): within 1 % of the pixels' area at ragged edges.
MZ_PIXEL_AREA_TOLERANCE = 1e-6
MZ_AREA_TOLERANCE = 0.01


@dg.asset_check(asset="management_zone_statistics", partitions_def=imagery_batches, blocking=True,
                additional_ins={"index_statistics": dg.AssetIn("index_statistics")},
                description="The management-zone classes and features sum to the zoning "
                            "index's valid area (to rounding), the zone polygons' areas within "
                            "1 % (on small scenes, half a working cell along the outline).")
def management_zones_conserve_area(context: dg.AssetCheckExecutionContext,
                                   management_zone_statistics: ManagementZonesAnalysis | None,
                                   index_statistics: IndexAnalysis | None) -> dg.AssetCheckResult:
    mz = management_zone_statistics
    if mz is None or index_statistics is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no management zones"})
    valid = float(index_statistics.indices[mz.index].stats["valid_area_m2"])
    classes = sum(c.area_m2 for c in mz.class_stats)
    parts = sum(p.area_m2 for p in mz.parts)
    polygons = (parts if _geographic(index_statistics)
                else sum(p.geometry.area for p in mz.parts))
    errors = {name: abs(value - valid) / valid if valid else float(value > 0)
              for name, value in (("classes", classes), ("features", parts),
                                  ("polygons", polygons))}
    cell = mz.factor * abs(index_statistics.grid.transform.a)  # a working cell's side (north-up)
    tolerances = {"classes": MZ_PIXEL_AREA_TOLERANCE, "features": MZ_PIXEL_AREA_TOLERANCE,
                  "polygons": MZ_PIXEL_AREA_TOLERANCE if _geographic(index_statistics)
                  else polygon_area_tolerance(geometries=[p.geometry for p in mz.parts],
                                              valid_area=valid, cell=cell,
                                              relative=MZ_AREA_TOLERANCE)}
    # geographic: polygons are the features' areas; projected: 1 %, or the outline's cells on
    # small scenes (pipeline.core.mgmt_zones.polygon_area_tolerance)
    return final_check(context, dg.AssetCheckResult(
        passed=all(e <= tolerances[name] for name, e in errors.items()),
        metadata={"valid_area_m2": valid, "classes_area_m2": classes, "features_area_m2": parts,
                  "polygons_area_m2": float(polygons),
                  "relative_errors": dg.MetadataValue.json(
                      {k: round(v, 6) for k, v in errors.items()}),
                  "tolerances": dg.MetadataValue.json(
                      {k: round(v, 6) for k, v in tolerances.items()})}))


def _geographic(indices: IndexAnalysis) -> bool:
    """Polygon areas in a geographic grid CRS are in degrees²: compare the pixel areas only."""
    return bool(indices.grid.crs.is_geographic)


CHECKS = [index_values_in_range, index_valid_fraction, index_cogs_valid, heatmap_cogs_valid,
          thermal_cog_valid, thermal_plausible, management_zones_cog_valid,
          management_zones_conserve_area]
