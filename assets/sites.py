"""Sites (DESIGN.md §3.3, §4): change since the site's previous flight, and `site_history`.

Thin wrappers: the records of a site's series are read from the report bucket
(`pipeline.core.sites`), the comparison and the change rasters are computed by
`pipeline.core.change`.
"""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from rasterio.errors import RasterioIOError

from assets.analysis import _nothing, _preview_md, _workdir, _zones
from assets.failures import decided_by_error_kind
from pipeline.core.analysis import IndexAnalysis, ThermalAnalysis
from pipeline.core.change import (
    CHANGE_SCALE,
    BatchRasters,
    Comparability,
    analyse_change,
    assess_comparability,
)
from pipeline.core.site_plots import footprint_4326, series_chart_uri
from pipeline.core.sites import (
    BatchRecord,
    SiteChange,
    StacObject,
    collection_key,
    history_key,
    history_parquet,
    history_rows,
    previous_record,
    read_records,
    record_key,
    stac_collection,
    stac_item,
    stale_records,
    to_json_bytes,
)
from pipeline.core.validation import ValidatedBatch
from pipeline.core.zones import load_zones
from pipeline.partitions import imagery_batches
from resources.cog_encoding import CogEncodingResource
from resources.dask import DaskResource
from resources.io_managers import PublishedFiles, PublishedObjects
from resources.object_store import ObjectStoreResource

CHANGE_CODE_VERSION = "1"
SITE_HISTORY_CODE_VERSION = "1"
_OWNERS = ["team:imagery"]


def _s3(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


@dg.multi_asset(
    partitions_def=imagery_batches,
    group_name="site",
    pool="raster",
    can_subset=False,
    outs={
        "change_rasters": dg.AssetOut(
            io_manager_key="heatmap_io_manager",
            code_version=CHANGE_CODE_VERSION,
            owners=_OWNERS,
            kinds={"cog"},
            description="change_<index>.tif: this batch's index minus the site's previous batch's "
            "(resampled bilinearly onto this grid), float32, NaN where either is nodata; only when "
            "the two batches are comparable (DESIGN.md §3.3).",
        ),
        "change_heatmaps": dg.AssetOut(
            io_manager_key="heatmap_io_manager",
            code_version=CHANGE_CODE_VERSION,
            owners=_OWNERS,
            kinds={"cog", "png"},
            description="Heatmap of each change raster on the fixed "
            f"{CHANGE_SCALE.ramp} scale over "
            f"[{CHANGE_SCALE.vmin:g}, {CHANGE_SCALE.vmax:g}], and a PNG preview.",
        ),
        "change_statistics": dg.AssetOut(
            code_version=CHANGE_CODE_VERSION,
            owners=_OWNERS,
            kinds={"python"},
            description="The batch's place in its site's series: previous batch, comparability "
            "verdict with every reason and the co-registration shift, and the change statistics "
            "of the grid and of each field. None for a batch without site_id.",
        ),
    },
)
def site_change(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    index_statistics: IndexAnalysis | None,
    index_rasters: PublishedObjects,
    object_store: ObjectStoreResource,
    dask_resource: DaskResource,
    cog_encoding: CogEncodingResource,
):
    batch = imagery_batch.with_gdal_options(object_store.store().gdal_options())
    m = batch.manifest
    outs = ("change_rasters", "change_heatmaps")
    if m.site_id is None:
        yield from _nothing(context, batch, (*outs, "change_statistics"),
                            "no site_id in manifest.json: no site, no change")
        return
    store = object_store.store()
    records = read_records(store, object_store.report_bucket, m.site_id)
    previous = previous_record(records, batch_id=batch.batch_id, captured_at=m.captured_at_utc)
    verdict: Comparability | None = None
    analysis = None
    if previous is None:
        context.log.info(
            f"Batch {batch.batch_id}: first batch of site {m.site_id} (no processed "
            "batch with an earlier captured_at): no change"
        )
    elif index_statistics is None:
        verdict = Comparability(
            False, ("this batch has no optical band, so no index to compare",), None, None, None
        )
    else:
        current = BatchRasters(
            batch.batch_id,
            {
                n: index_rasters.objects[f"{n}.tif"].gdal_path
                for n in index_statistics.indices
                if f"{n}.tif" in index_rasters.objects
            },
            m.reflectance_scale_explicit,
        )
        before = BatchRasters(
            previous.batch_id,
            {
                n: store.gdal_path(object_store.heatmap_bucket, f"{previous.batch_id}/{n}.tif")
                for n in previous.indices
            },
            previous.reflectance_explicit,
        )
        try:
            verdict = assess_comparability(
                grid=index_statistics.grid,
                current=current,
                previous=before,
                gdal_options=store.gdal_options(),
            )
        except RasterioIOError as exc:
            verdict = Comparability(
                False,
                (
                    f"the previous batch {previous.batch_id}'s rasters "
                    f"cannot be read ({exc}); reprocess it",
                ),
                None,
                None,
                None,
            )
        if verdict.comparable:
            with decided_by_error_kind(context, batch.batch_id):
                zones_bytes = _zones(batch, object_store)
                zones = (
                    load_zones(zones_bytes, name=m.zones or "zones", grid=index_statistics.grid)
                    if zones_bytes
                    else []
                )
                with _workdir(f"{batch.batch_id}-change", object_store) as workdir:
                    with dask_resource.session() as scheduler:
                        context.log.info(
                            f"Batch {batch.batch_id}: change since {previous.batch_id} "
                            f"on {scheduler}"
                        )
                        analysis = analyse_change(
                            grid=index_statistics.grid,
                            current=current.rasters,
                            previous=before.rasters,
                            workdir=Path(workdir),
                            zones=zones,
                            gdal_options=store.gdal_options(),
                            encoding=cog_encoding.encoding(),
                            log=context.log.info,
                        )
                    rasters = tuple(f for f in analysis.files if f.kind == "float32")
                    heatmaps = tuple(f for f in analysis.files if f.kind != "float32")
                    yield dg.Output(
                        PublishedFiles(rasters),
                        "change_rasters",
                        metadata={"previous_batch_id": previous.batch_id},
                    )
                    yield dg.Output(
                        PublishedFiles(heatmaps),
                        "change_heatmaps",
                        metadata={
                            "preview": dg.MetadataValue.md(
                                _preview_md(heatmaps, [f"change_{n}" for n in analysis.indices])
                            )
                        },
                    )
        else:
            context.log.warning(
                f"Batch {batch.batch_id} is not comparable with {previous.batch_id} (site "
                f"{m.site_id}): " + "; ".join(verdict.reasons)
            )
    if analysis is None:
        note = "no comparable previous batch: no change rasters"
        for out in outs:
            yield dg.Output(PublishedFiles(note=note), out)
    result = SiteChange(
        site_id=m.site_id,
        batch_id=batch.batch_id,
        captured_at=m.captured_at_utc,
        previous=previous,
        comparability=verdict,
        analysis=analysis,
    )
    fields = result.site_fields()
    metadata: dict = {
        "site_id": m.site_id,
        "previous_batch_id": fields["previous_batch_id"] or "",
        "comparable": fields["comparable"],
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in fields["reasons"]) or "_none_"),
    }
    if verdict is not None and verdict.shift_px is not None:
        metadata["shift_px"] = dg.MetadataValue.json(list(verdict.shift_px))
    for name, stats in (analysis.indices if analysis else {}).items():
        if stats["mean"] is not None:
            metadata[f"change_{name}_mean"] = float(stats["mean"])
    yield dg.Output(result, "change_statistics", metadata=metadata)


def _objects(
    store, bucket: str, batch_id: str, *, skip: frozenset[str] = frozenset()
) -> list[StacObject]:
    out = []
    for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
        name = info.key[len(batch_id) + 1 :]
        if name not in skip and name.endswith((".tif", ".png", ".pdf", ".json")):
            out.append(StacObject(name=name, href=_s3(bucket, info.key)))
    return out


def _rebuild_site(store, reports: str, site_id: str) -> list[BatchRecord]:
    """history.parquet and collection.json rebuilt whole from the site's records (so nothing is
    ever appended twice); returns the records."""
    records = read_records(store, reports, site_id)
    store.put_bytes(
        reports,
        history_key(site_id),
        history_parquet(records),
        content_type="application/vnd.apache.parquet",
    )
    collection = stac_collection(
        site_id=site_id,
        records=records,
        item_hrefs={r.batch_id: _s3(reports, f"{r.batch_id}/item.json") for r in records},
        self_href=_s3(reports, collection_key(site_id)),
    )
    store.put_bytes(
        reports, collection_key(site_id), to_json_bytes(collection), content_type="application/json"
    )
    return records


@dg.asset(
    partitions_def=imagery_batches,
    group_name="site",
    owners=_OWNERS,
    kinds={"parquet", "json"},
    code_version=SITE_HISTORY_CODE_VERSION,
    # One at a time across runs (pools without an explicit limit get dagster.yaml's default of 1):
    # the site's history.parquet and collection.json are rebuilt whole from its records.
    pool="site_history",
    description="The site's series (DESIGN.md §3.3): this batch's record, then reports/sites/"
    "<site_id>/history.parquet (one row per batch, zone and index) and collection.json (STAC) "
    "rebuilt from all records, and reports/<batch_id>/item.json (STAC Item, for every batch). "
    "Batches whose change now compares with the wrong flight (a late older batch, a previous batch "
    "processed again) are listed as stale; reprocess_stale_batches re-runs them.",
)
def site_history(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    index_statistics: IndexAnalysis | None,
    thermal_statistics: ThermalAnalysis | None,
    change_statistics: SiteChange | None,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    batch, m = imagery_batch, imagery_batch.manifest
    store = object_store.store()
    reports, heatmaps = object_store.report_bucket, object_store.heatmap_bucket
    now = datetime.now(UTC).replace(microsecond=0)
    grid = index_statistics.grid if index_statistics else thermal_statistics.grid
    footprint, bbox = footprint_4326(grid)
    metadata: dict = {"site_id": m.site_id or ""}
    record = None
    if m.site_id is not None:
        rows = (
            history_rows(
                indices=index_statistics.indices, zone_areas_m2=index_statistics.zone_areas_m2
            )
            if index_statistics
            else []
        )
        previous = change_statistics.previous if change_statistics else None
        comparable = bool(change_statistics and change_statistics.analysis is not None)
        record = BatchRecord(
            site_id=m.site_id,
            batch_id=batch.batch_id,
            captured_at=m.captured_at_utc,
            reflectance_explicit=m.reflectance_scale_explicit,
            indices=tuple(index_statistics.indices) if index_statistics else (),
            crs=grid.crs.to_string(),
            bbox_4326=tuple(bbox),
            previous_batch_id=previous.batch_id if previous else None,
            previous_fingerprint=previous.fingerprint() if previous else None,
            comparable=comparable,
            rows=tuple(rows),
            processed_at=now,
        )
        store.put_bytes(
            reports,
            record_key(m.site_id, batch.batch_id),
            record.to_json(),
            content_type="application/json",
        )
    objects = _objects(store, heatmaps, batch.batch_id)
    report_names = ("report.pdf", "summary.json", "distribution.json") if m.auto_report else ()
    objects += [StacObject(n, _s3(reports, f"{batch.batch_id}/{n}")) for n in report_names]
    epsg = grid.crs.to_epsg()
    item = stac_item(
        batch_id=batch.batch_id,
        captured_at=m.captured_at_utc,
        generated_at=now,
        footprint_4326=footprint,
        bbox_4326=bbox,
        proj_code=f"EPSG:{epsg}" if epsg else None,
        proj_wkt2=None if epsg else grid.crs.to_wkt(),
        shape=grid.shape,
        transform=tuple(grid.transform)[:6],
        objects=objects,
        site_id=m.site_id,
        collection_href=_s3(reports, collection_key(m.site_id)) if m.site_id else None,
        self_href=_s3(reports, f"{batch.batch_id}/item.json"),
    )
    store.put_bytes(
        reports, f"{batch.batch_id}/item.json", to_json_bytes(item), content_type="application/json"
    )
    metadata["item"] = dg.MetadataValue.url(store.uri(reports, f"{batch.batch_id}/item.json"))
    # A batch re-uploaded without its site_id, or with another one, leaves its former site.
    for prefix in store.list_prefixes(reports, prefix="sites/"):
        former = prefix[len("sites/") :].strip("/")
        if former != m.site_id and store.exists(reports, record_key(former, batch.batch_id)):
            store.delete(reports, record_key(former, batch.batch_id))
            _rebuild_site(store, reports, former)
            context.log.warning(
                f"Batch {batch.batch_id} removed from site {former}: its manifest "
                f"now says site_id {m.site_id!r}"
            )
    if record is None:
        context.log.info(f"Batch {batch.batch_id}: no site_id; STAC item written, no site history")
        return dg.MaterializeResult(metadata=metadata)

    records = _rebuild_site(store, reports, m.site_id)
    stale = stale_records(records)
    for batch_id, why in stale.items():
        context.log.warning(
            f"Site {m.site_id}: batch {batch_id} is stale ({why}); "
            "reprocess_stale_batches will re-run it"
        )
    context.log.info(
        f"Site {m.site_id}: {len(records)} batch(es) in history.parquet and "
        f"collection.json; {len(stale)} stale"
    )
    table = ["| captured_at | batch | NDVI mean | compared with |", "|---|---|---|---|"]
    for r in records:
        ndvi = next((row.mean for row in r.rows if row.zone == "" and row.index == "ndvi"), None)
        table.append(
            f"| {r.captured_at:%Y-%m-%d %H:%M} | {r.batch_id} | "
            f"{'' if ndvi is None else f'{ndvi:.3f}'} | {r.previous_batch_id or ''}"
            f"{' (not comparable)' if r.previous_batch_id and not r.comparable else ''} |"
        )
    metadata.update(
        {
            "batches": len(records),
            "series": dg.MetadataValue.md("\n".join(table)),
            "stale_batches": dg.MetadataValue.json(stale),
            "history": dg.MetadataValue.url(store.uri(reports, history_key(m.site_id))),
            "collection": dg.MetadataValue.url(store.uri(reports, collection_key(m.site_id))),
        }
    )
    with tempfile.TemporaryDirectory(prefix="site-") as tmp:
        chart = series_chart_uri(records, workdir=Path(tmp))
    if chart:
        metadata["ndvi_by_field"] = dg.MetadataValue.md(f"![NDVI by field]({chart})")
    mean = next((row.mean for row in record.rows if row.zone == "" and row.index == "ndvi"), None)
    if mean is not None:
        metadata["ndvi_mean"] = float(mean)
    return dg.MaterializeResult(metadata=metadata)
