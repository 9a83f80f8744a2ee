"""Vegetation indices and thermal maps: thin wrappers around `pipeline.core.analysis`.

Each multi-asset runs one pass of the raster engine (inputs decoded once) and yields three assets:
the float32 COGs, the paletted heatmap COGs with PNG previews, and the statistics the report is
built from. Window results stream back to this process, which encodes the COGs in its own
temporary folder: dask workers need the object store only, no shared disk (DESIGN.md §5).
"""

import hashlib
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import dagster as dg

from assets.failures import decided_by_error_kind
from pipeline.core.analysis import IndexAnalysis, ThermalAnalysis, analyse_indices, analyse_thermal
from pipeline.core.errors import ImageryError
from pipeline.core.registry import BUILTIN_REGISTRY, THERMAL_SCALE, Registry
from pipeline.core.validation import ValidatedBatch, thermal_calibration
from pipeline.partitions import imagery_batches
from resources.cog_encoding import CogEncodingResource
from resources.dask import DaskResource
from resources.indices import IndexRegistryResource
from resources.io_managers import PublishedFiles
from resources.limits import LimitsResource
from resources.object_store import ObjectStoreResource


def indices_code_version(registry: Registry) -> str:
    """The index assets' code version: changes with any index's definition (a built-in's version,
    a custom index's hash), so the UI marks every partition stale after a formula change and
    `reprocess_stale_batches` picks it up."""
    return "1-" + hashlib.sha256(
        ",".join(f"{d.name}:{d.code_version}" for d in registry.values()).encode()).hexdigest()[:12]


def _index_specs(registry: Registry) -> dict[str, dict]:
    """Code version and description of each index asset, for `registry` (the object names each
    publishes are the catalogue's, `pipeline.core.outputs`, for any index name)."""
    listed = ", ".join(registry)
    version = indices_code_version(registry)
    return {
        "index_rasters": dict(
            code_version=version,
            description="Float32 Cloud-Optimized GeoTIFF of every index the batch's bands allow "
            f"({listed}; DESIGN.md §3.2), on the batch grid, nodata NaN: "
            "analysis-heatmaps/<batch_id>/<index>.tif."),
        "index_heatmaps": dict(
            code_version=version,
            description="Heatmap COG of each index over its fixed colour scale (the same for "
            "every batch; " + "; ".join(
                f"{d.name}: {d.scale.ramp} {d.scale.vmin:g}..{d.scale.vmax:g}"
                for d in registry.values())
            + "): one paletted uint8 band, palette entry 0 = no data (DESIGN.md §3.1), and a PNG "
            "preview ≤ 1024 px."),
        "index_statistics": dict(
            code_version=version,
            description="Per index ("
            + "; ".join(f"{d.name} = {d.formula}" for d in registry.values()) + "): mean, std, "
            "min, max, p10/p50/p90, valid fraction and area, NDVI health classes, per-zone "
            "statistics and the report's histograms."),
    }


def for_registry(assets: dg.AssetsDefinition, registry: Registry) -> dg.AssetsDefinition:
    """`vegetation_indices` with the code version and descriptions of the deployment's
    `registry` (built once when the code location loads)."""
    specs = _index_specs(registry)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        changes = specs.get(spec.key.to_user_string())
        return spec if changes is None else spec.replace_attributes(**changes)

    return dg.map_asset_specs(apply, [assets])[0]


_Analysis = TypeVar("_Analysis", IndexAnalysis, ThermalAnalysis)
INDICES_CODE_VERSION = indices_code_version(BUILTIN_REGISTRY)
THERMAL_CODE_VERSION = "1"
_OWNERS = ["team:imagery"]
_BUILTIN_SPECS = _index_specs(BUILTIN_REGISTRY)


@contextmanager
def _workdir(batch_id: str, object_store: ObjectStoreResource):
    """This process's own temporary folder for the stages and COGs of one asset: on the store's
    file system when the store has one (the local store renames the COGs in, no copy)."""
    scratch = object_store.store().scratch_dir()
    with tempfile.TemporaryDirectory(prefix=f"{batch_id}-", dir=scratch) as tmp:
        yield Path(tmp)


def _zones(batch: ValidatedBatch, object_store: ObjectStoreResource) -> bytes | None:
    if not batch.manifest.zones:
        return None
    return object_store.store().get_bytes(object_store.imagery_bucket,
                                          f"{batch.batch_id}/{batch.manifest.zones}")


def _float_metadata(stats: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key in ("mean", "std", "min", "max", "p10", "p50", "p90", "valid_fraction"):
        if stats.get(key) is not None:
            out[f"{prefix}{key}"] = float(stats[key])
    for c in stats.get("classes", []):
        out[f"{prefix}class_{c['name']}_fraction"] = float(c["fraction"])
    return out


def _nothing(context, batch: ValidatedBatch, outputs: tuple[str, ...], note: str):
    """The outputs of a multi-asset when the batch has nothing for it, logged with a note: each
    file output empty with the note, the last (the statistics) None."""
    context.log.info(f"Batch {batch.batch_id}: {note}")
    *files, statistics = outputs
    for name in files:
        yield dg.Output(PublishedFiles(note=note), name)
    yield dg.Output(None, statistics, metadata={"note": note})


@contextmanager
def _withdrawn_if_refused(context, batch: ValidatedBatch, object_store: ObjectStoreResource):
    """Bad input found during the analysis withdraws what this run already published for the batch
    (the other analysis may have run first), so a refused batch leaves nothing under
    analysis-heatmaps/ or reports/ (DESIGN.md §2); the error then goes on to
    `decided_by_error_kind`. Every other refusal happens while the batch is validated, before
    anything is published, and no later step of a refused run publishes
    (resources/io_managers.py)."""
    try:
        yield
    except ImageryError:
        _withdraw_this_run(context, batch.batch_id, object_store)
        raise


def _withdraw_this_run(context, batch_id: str, object_store: ObjectStoreResource) -> None:
    record = context.instance.get_run_record_by_id(context.run_id)
    started = (record.start_time or record.create_timestamp.timestamp()) if record else None
    if started is None:
        return
    store = object_store.store()
    for bucket in (object_store.heatmap_bucket, object_store.report_bucket):
        for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
            if info.last_modified.timestamp() >= started - 1.0:  # written by this run
                store.delete(bucket, info.key)
                store.invalidate(bucket, info.key)
                context.log.info(f"Withdrew {store.uri(bucket, info.key)}: the batch is refused")

# Thumbnails in the materialization's metadata: the event log keeps every event, and the UI
# fetches them with the asset page, so a few kB per map (the full PNG is ~2 MB as base64).
THUMBNAIL_PX = 256


def _thumbnail_uri(path) -> str:
    """A small JPEG data: URI of a heatmap PNG, transparent pixels (no data) on white."""
    import base64
    import io

    from PIL import Image

    with Image.open(path) as png:
        rgba = png.convert("RGBA")
    rgba.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    rgb = Image.new("RGB", rgba.size, "white")
    rgb.paste(rgba, mask=rgba.getchannel("A"))
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _preview_md(files, names) -> str:
    """Markdown with a thumbnail per heatmap (the Dagster UI renders data: URIs in markdown)."""
    by_name = {f.object_name: f for f in files}
    parts = []
    for name in names:
        f = by_name.get(f"{name}_heatmap.png")
        if f is not None:
            parts.append(f"**{name}**\n\n![{name} heatmap]({_thumbnail_uri(f.path)})")
    return "\n\n".join(parts)


def _engine_pass(context, batch: ValidatedBatch, object_store: ObjectStoreResource,
                 dask_resource: DaskResource, *, outputs: tuple[str, str, str], what: str,
                 analyse: Callable[..., _Analysis],
                 raster_metadata: Callable[[_Analysis], dict],
                 previews: Callable[[_Analysis], list[str]]):
    """The shared body of the analysis multi-assets: `analyse(workdir=, zones=)` (one pass of the
    raster engine) in this process's own folder on the dask session, then the float32 COGs and
    the heatmaps (with thumbnails of `previews`) yielded as the first two `outputs`; returns the
    analysis for the third. Errors are decided by kind, and bad input withdraws what the run
    published. The scheduler session (and its progress callback, registered process-wide by
    dask) ends before the first yield: a generator abandoned at a yield would leave it behind."""
    rasters_out, heatmaps_out, _ = outputs
    with decided_by_error_kind(context, batch.batch_id), \
            _withdrawn_if_refused(context, batch, object_store):
        zones = _zones(batch, object_store)
        with _workdir(batch.batch_id, object_store) as workdir:
            with dask_resource.session() as scheduler:
                context.log.info(f"Batch {batch.batch_id}: {what} on {scheduler}")
                result = analyse(workdir=workdir, zones=zones)
            rasters = tuple(f for f in result.files if f.kind == "float32")
            heatmaps = tuple(f for f in result.files if f.kind != "float32")
            yield dg.Output(PublishedFiles(rasters), rasters_out, metadata=raster_metadata(result))
            yield dg.Output(PublishedFiles(heatmaps), heatmaps_out, metadata={
                "preview": dg.MetadataValue.md(_preview_md(heatmaps, previews(result)))})
    return result


@dg.multi_asset(
    partitions_def=imagery_batches,
    group_name="analysis",
    pool="raster",
    can_subset=False,
    outs={
        # code versions, descriptions and object names as for the built-ins; the code location
        # applies its registry's with `for_registry`
        "index_rasters": dg.AssetOut(
            io_manager_key="heatmap_io_manager", owners=_OWNERS, kinds={"cog"},
            **_BUILTIN_SPECS["index_rasters"]),
        "index_heatmaps": dg.AssetOut(
            io_manager_key="heatmap_io_manager", owners=_OWNERS, kinds={"cog", "png"},
            **_BUILTIN_SPECS["index_heatmaps"]),
        "index_statistics": dg.AssetOut(
            owners=_OWNERS, kinds={"python"}, **_BUILTIN_SPECS["index_statistics"]),
    },
)
def vegetation_indices(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    object_store: ObjectStoreResource,
    dask_resource: DaskResource,
    limits: LimitsResource,
    index_registry: IndexRegistryResource,
    cog_encoding: CogEncodingResource,
):
    # credentials are never stored with the batch: attached here, from the resource
    batch = imagery_batch.with_gdal_options(object_store.store().gdal_options())
    for ignored in batch.ignored:
        context.log.info(f"Batch {batch.batch_id}: {ignored.path} {ignored.reason}")
    outputs = ("index_rasters", "index_heatmaps", "index_statistics")
    if not batch.optical_sources:
        yield from _nothing(context, batch, outputs,
                            "thermal-only batch: no optical band, no vegetation index")
        return
    result = yield from _engine_pass(
        context, batch, object_store, dask_resource, outputs=outputs, what="computing indices",
        analyse=lambda *, workdir, zones: analyse_indices(
            sources=batch.optical_sources, reflectance_scale=batch.manifest.reflectance_scale,
            workdir=workdir, zones_geojson=zones, zones_name=batch.manifest.zones or "zones",
            max_pixels=limits.max_pixels, encoding=cog_encoding.encoding(),
            log=context.log.info, registry=index_registry.registry()),
        raster_metadata=lambda result: {"indices": ", ".join(result.indices),
                                        "seconds": round(result.seconds, 2)},
        previews=lambda result: list(result.indices))
    metadata: dict = {"masked_values": dg.MetadataValue.json(result.masked_values),
                      "masked_values_total": sum(result.masked_values.values())}
    for name, r in result.indices.items():
        metadata.update(_float_metadata(r.stats, f"{name}_"))
    yield dg.Output(result, "index_statistics", metadata=metadata)


def _thermal_parameters(batch: ValidatedBatch) -> tuple[str | None, float | None, float | None]:
    # validated with the batch (pipeline.core.validation); batches stored before that carry None
    return batch.thermal_calibration or thermal_calibration(
        batch.manifest, (s.name for s in batch.thermal_sources))


@dg.multi_asset(
    partitions_def=imagery_batches,
    group_name="analysis",
    pool="raster",
    can_subset=False,
    outs={
        "thermal_raster": dg.AssetOut(
            io_manager_key="heatmap_io_manager", code_version=THERMAL_CODE_VERSION,
            owners=_OWNERS, kinds={"cog"},
            description="Surface temperature in °C (float32 COG, nodata NaN) on the thermal "
            "grid: analysis-heatmaps/<batch_id>/thermal_c.tif."),
        "thermal_heatmap": dg.AssetOut(
            io_manager_key="heatmap_io_manager", code_version=THERMAL_CODE_VERSION,
            owners=_OWNERS, kinds={"cog", "png"},
            description=f"Paletted heatmap of temperature on the fixed {THERMAL_SCALE.ramp} scale "
            f"{THERMAL_SCALE.vmin:g}-{THERMAL_SCALE.vmax:g} °C, and a PNG preview."),
        "thermal_statistics": dg.AssetOut(
            code_version=THERMAL_CODE_VERSION, owners=_OWNERS, kinds={"python"},
            description="Mean, min, max and p90 temperature, the hotspot threshold and the "
            "hotspots (connected regions above it: centroid, area, hottest pixel), per zone."),
    },
)
def thermal_maps(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    object_store: ObjectStoreResource,
    dask_resource: DaskResource,
    limits: LimitsResource,
    cog_encoding: CogEncodingResource,
):
    # credentials are never stored with the batch: attached here, from the resource
    batch = imagery_batch.with_gdal_options(object_store.store().gdal_options())
    outputs = ("thermal_raster", "thermal_heatmap", "thermal_statistics")
    if not batch.thermal_sources:
        yield from _nothing(context, batch, outputs, "no thermal band in this batch")
        return
    with decided_by_error_kind(context, batch.batch_id), \
            _withdrawn_if_refused(context, batch, object_store):
        unit, scale, offset = _thermal_parameters(batch)
    result = yield from _engine_pass(
        context, batch, object_store, dask_resource, outputs=outputs, what="thermal map",
        analyse=lambda *, workdir, zones: analyse_thermal(
            sources=batch.thermal_sources, unit=unit, scale=scale, offset=offset,
            workdir=workdir, zones_geojson=zones, zones_name=batch.manifest.zones or "zones",
            max_pixels=limits.max_pixels, encoding=cog_encoding.encoding(),
            log=context.log.info),
        raster_metadata=lambda result: {"seconds": round(result.seconds, 2)},
        previews=lambda result: ["thermal"])
    s = result.stats
    metadata = {k: float(s[k]) for k in ("mean_c", "min_c", "max_c", "p90_c", "hotspot_area_m2")
                if s.get(k) is not None}
    metadata["hotspot_count"] = len(s["hotspots"])
    yield dg.Output(result, "thermal_statistics", metadata=metadata)
