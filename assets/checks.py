"""Asset checks guarding each stage. The blocking ones gate the report and its distribution."""

import dagster as dg
import rasterio

from assets.failures import final_check
from pipeline.core.analysis import IndexAnalysis, ThermalAnalysis
from pipeline.partitions import imagery_batches
from resources.indices import IndexRegistryResource
from resources.io_managers import PublishedObjects
from resources.limits import LimitsResource

# evi and vari are unbounded in theory (their denominators can approach 0 on odd pixels), so
# values outside their plausible range are reported as a warning, not an error.
_WARN_ONLY = {"evi", "vari"}
# Plausible surface temperatures for uncooled radiometric cameras over crops, soil and water.
THERMAL_PLAUSIBLE_C = (-40.0, 120.0)


@dg.asset_check(asset="index_statistics", partitions_def=imagery_batches, blocking=True,
                description="Every index's min and max lie within its valid range (custom indices "
                            "have none).")
def index_values_in_range(context: dg.AssetCheckExecutionContext,
                          index_statistics: IndexAnalysis | None,
                          index_registry: IndexRegistryResource) -> dg.AssetCheckResult:
    if index_statistics is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no optical bands; no index"})
    problems, warnings, ranges = [], [], {}
    registry = index_registry.registry()
    for name, result in index_statistics.indices.items():
        vmin, vmax = result.stats["min"], result.stats["max"]
        ranges[name] = [vmin, vmax]
        if vmin is None or name not in registry or registry[name].value_range is None:
            continue
        lo, hi = registry[name].value_range
        if vmin < lo - 1e-6 or vmax > hi + 1e-6:
            (warnings if name in _WARN_ONLY else problems).append(
                f"{name} spans [{vmin:.4f}, {vmax:.4f}], outside [{lo}, {hi}]")
    severity = dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN
    return final_check(context, dg.AssetCheckResult(
        passed=not problems and not warnings, severity=severity,
        metadata={"ranges": dg.MetadataValue.json(ranges),
                  "problems": "; ".join(problems + warnings) or "none"}))


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
                description="Every published heatmap is a valid RGBA COG with a CRS.")
def heatmap_cogs_valid(context: dg.AssetCheckExecutionContext,
                       index_heatmaps: PublishedObjects) -> dg.AssetCheckResult:
    return final_check(context, _cogs_valid(index_heatmaps, dtype="uint8", count=4))


@dg.asset_check(asset="thermal_raster", partitions_def=imagery_batches, blocking=True,
                description="The published thermal raster is a valid COG with a CRS.")
def thermal_cog_valid(context: dg.AssetCheckExecutionContext,
                      thermal_raster: PublishedObjects) -> dg.AssetCheckResult:
    return final_check(context, _cogs_valid(thermal_raster, dtype="float32"))


def _cogs_valid(published: PublishedObjects, *, dtype: str, count: int = 1) -> dg.AssetCheckResult:
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
    return dg.AssetCheckResult(passed=not problems,
                               metadata={"rasters_checked": checked,
                                         "problems": "; ".join(problems) or "none"})


@dg.asset_check(asset="thermal_statistics", partitions_def=imagery_batches, blocking=True,
                description=f"Temperatures lie within {THERMAL_PLAUSIBLE_C[0]:g} to "
                            f"{THERMAL_PLAUSIBLE_C[1]:g} °C (a wrong thermal_unit or scale shows here).")
def thermal_plausible(context: dg.AssetCheckExecutionContext,
                      thermal_statistics: ThermalAnalysis | None) -> dg.AssetCheckResult:
    if thermal_statistics is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no thermal band"})
    s = thermal_statistics.stats
    lo, hi = THERMAL_PLAUSIBLE_C
    if s["min_c"] is None:
        return final_check(context, dg.AssetCheckResult(
            passed=False, metadata={"problem": "no valid thermal pixel"}))
    ok = lo <= s["min_c"] and s["max_c"] <= hi
    return final_check(context, dg.AssetCheckResult(
        passed=ok,
        metadata={"min_c": float(s["min_c"]), "max_c": float(s["max_c"]),
                  "hint": "ok" if ok else "check thermal_unit / thermal_scale / thermal_offset in "
                                          "manifest.json (e.g. centikelvin for radiometric uint16)"}))


CHECKS = [index_values_in_range, index_valid_fraction, index_cogs_valid, heatmap_cogs_valid,
          thermal_cog_valid, thermal_plausible]
