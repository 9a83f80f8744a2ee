"""Management zones and the prescription (DESIGN.md §3.4): a thin wrapper around
`pipeline.core.mgmt_analysis`, reading the published NDVI (or VARI) COG from the object store."""

import dagster as dg

from assets.analysis import _nothing, _workdir, _zones
from assets.failures import decided_by_error_kind
from pipeline.core.mgmt_analysis import ZONING_INDICES, analyse_management_zones
from pipeline.core.outputs import object_name
from pipeline.core.validation import ValidatedBatch
from pipeline.partitions import imagery_batches
from resources.io_managers import PublishedFiles, PublishedObjects
from resources.object_store import ObjectStoreResource
from resources.zoning import ZoningResource

MZ_CODE_VERSION = "1"
_OWNERS = ["team:imagery"]


@dg.multi_asset(
    partitions_def=imagery_batches,
    group_name="analysis",
    pool="raster",
    can_subset=False,
    outs={
        "management_zones": dg.AssetOut(
            io_manager_key="heatmap_io_manager", code_version=MZ_CODE_VERSION, owners=_OWNERS,
            kinds={"cog", "geojson", "shapefile"},
            description="Management zones from NDVI (VARI without NIR): IMAGERY_MZ_CLASSES classes "
            "(1 = lowest vigour) by natural breaks, parts under IMAGERY_MZ_MIN_HA merged, as a "
            "paletted class COG, GeoJSON (EPSG:4326) and zipped shapefile (grid CRS); with the "
            "manifest's prescription, prescription_isoxml.zip (ISO 11783-10 TaskData)."),
        "management_zone_statistics": dg.AssetOut(
            code_version=MZ_CODE_VERSION, owners=_OWNERS, kinds={"python"},
            description="Per class: area, mean index, rate; per field: its parts and canopy "
            "cover (share of valid pixels with NDVI ≥ IMAGERY_CANOPY_NDVI)."),
    },
)
def management_zones(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    index_rasters: PublishedObjects,
    object_store: ObjectStoreResource,
    zoning: ZoningResource,
):
    batch = imagery_batch
    index = next((i for i in ZONING_INDICES
                  if object_name("{index}.tif", i) in index_rasters.objects), None)
    if index is None:
        yield from _nothing(context, batch, ("management_zones", "management_zone_statistics"),
                            "no NDVI or VARI raster (no optical bands allow one): no management "
                            "zones")
        return
    with decided_by_error_kind(context, batch.batch_id):
        zones = _zones(batch, object_store)
        source = index_rasters.objects[object_name("{index}.tif", index)]
        with _workdir(batch.batch_id, object_store) as workdir:
            result = analyse_management_zones(
                index_path=source.gdal_path, index=index,
                gdal_options=index_rasters.gdal_options, classes=zoning.classes,
                min_ha=zoning.min_ha, canopy_ndvi=zoning.canopy_ndvi,
                workdir=workdir / "management_zones", task=batch.batch_id,
                software_version=MZ_CODE_VERSION, prescription=batch.manifest.prescription,
                zones_geojson=zones, zones_name=batch.manifest.zones or "zones",
                log=context.log.info)
            yield dg.Output(PublishedFiles(tuple(result.files)), "management_zones",
                            metadata={"index": index, "features": len(result.parts),
                                      "vertices": result.vertices,
                                      "prescription": result.rates is not None})
    metadata = {"index": index, "method": result.method, "merged_parts": result.merged_parts,
                "seconds": round(result.seconds, 2)}
    for c in result.class_stats:
        metadata[f"class_{c.zone_class}_area_m2"] = float(c.area_m2)
    yield dg.Output(result, "management_zone_statistics", metadata=metadata)
