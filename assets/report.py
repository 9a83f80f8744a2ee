"""The report (summary.json + report.pdf) and its distribution (links, webhooks, e-mail)."""

import tempfile
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dagster as dg

from assets.analysis import THERMAL_CODE_VERSION, indices_code_version
from assets.failures import decided_by_error_kind
from assets.management_zones import MZ_CODE_VERSION
from pipeline.core.analysis import IndexAnalysis, OutputFile, ThermalAnalysis
from pipeline.core.mgmt_analysis import ManagementZonesAnalysis
from pipeline.core.outputs import Kind, batch_key, entry, lookup, object_name, preview_name
from pipeline.core.registry import BUILTIN_REGISTRY, Registry
from pipeline.core.report_build import build_context, build_summary, print_map
from pipeline.core.report_pdf import render_report
from pipeline.core.sites import SiteChange, read_records
from pipeline.core.summary import Link, Summary
from pipeline.core.validation import ValidatedBatch
from pipeline.core.zone_outputs import class_map_png
from pipeline.partitions import imagery_batches
from resources.indices import IndexRegistryResource
from resources.io_managers import PublishedFiles
from resources.notifier import NotifierResource
from resources.object_store import ObjectStoreResource
from resources.zoning import ZoningResource

REPORT_CODE_VERSION = "3"  # 2: summary.json v2 (site, change); 3: findings page, fields on maps
_OWNERS = ["team:imagery"]


def code_version(registry: Registry = BUILTIN_REGISTRY) -> str:
    try:
        package = version("imagery-pipeline")
    except PackageNotFoundError:  # running from a source tree without installing
        package = "0+unknown"
    return (f"{package}+idx.{indices_code_version(registry)}.th.{THERMAL_CODE_VERSION}"
            f".mz.{MZ_CODE_VERSION}.rep.{REPORT_CODE_VERSION}")


def _artifacts(store, bucket: str, batch_id: str) -> dict[str, str]:
    """summary.json `artifacts`: every COG of the batch (catalogue kind float or palette COG),
    by object name without `.tif`."""
    artifacts = {}
    for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
        found = lookup(info.key[len(batch_id) + 1:])
        if found and found[0].kind in (Kind.FLOAT_COG, Kind.PALETTE_COG):
            artifacts[info.key[len(batch_id) + 1:].removesuffix(".tif")] = store.uri(bucket, info.key)
    return dict(sorted(artifacts.items()))


@dg.asset(
    partitions_def=imagery_batches,
    group_name="report",
    owners=_OWNERS,
    kinds={"pdf", "json"},
    code_version=REPORT_CODE_VERSION,
    io_manager_key="report_io_manager",
    deps=["index_heatmaps", "thermal_heatmap", "index_rasters", "thermal_raster",
          "management_zones", "change_rasters", "change_heatmaps"],
    output_required=False,
    description="reports/<batch_id>/summary.json (DESIGN.md §3) and report.pdf, two renderings of "
    "one report model. Skipped when the manifest says auto_report: false.",
)
def batch_report(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    index_statistics: IndexAnalysis | None,
    thermal_statistics: ThermalAnalysis | None,
    management_zone_statistics: ManagementZonesAnalysis | None,
    change_statistics: SiteChange | None,
    object_store: ObjectStoreResource,
    index_registry: IndexRegistryResource,
    zoning: ZoningResource,
):
    batch = imagery_batch
    registry = index_registry.registry()
    mz = management_zone_statistics
    if not batch.manifest.auto_report:
        context.log.info(f"Batch {batch.batch_id}: manifest.json says auto_report: false; the run "
                         "stops after the heatmaps: no report, no distribution.")
        return
    store = object_store.store()
    heatmaps = object_store.heatmap_bucket
    names = set(index_statistics.indices) if index_statistics else set()
    changed = (set(change_statistics.analysis.indices)
               if change_statistics and change_statistics.analysis else set())
    artifacts = _artifacts(store, heatmaps, batch.batch_id)
    generated_at = datetime.now(UTC).replace(microsecond=0)
    summary = build_summary(batch=batch, indices=index_statistics, thermal=thermal_statistics,
                            artifacts=artifacts, generated_at=generated_at,
                            code_version=code_version(registry), registry=registry, zoning=mz,
                            site_change=change_statistics)
    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        workdir = Path(tmp)
        maps = {}
        for name in [*sorted(names), *(["thermal"] if thermal_statistics else []),
                     *(f"change_{n}" for n in sorted(changed))]:
            path = workdir / preview_name(name)
            store.download_file(heatmaps, batch_key(batch.batch_id, path.name), path)
            maps[name] = print_map(path, workdir / f"{name}_map.jpg")
        if mz is not None:
            png = class_map_png(store.gdal_path(
                heatmaps, batch_key(batch.batch_id, object_name("management_zones.tif"))),
                                workdir / "management_zones.png", classes=mz.classes,
                                gdal_options=store.gdal_options())
            maps["management_zones"] = print_map(png, workdir / "management_zones_map.jpg")
        records = (read_records(store, object_store.report_bucket, change_statistics.site_id)
                   if change_statistics is not None else [])
        zones = batch.manifest.zones  # the fields drawn on every map
        report_context = build_context(batch=batch, indices=index_statistics,
                                       thermal=thermal_statistics, maps=maps, registry=registry,
                                       zoning=mz, area_unit=zoning.area_unit,
                                       site_change=change_statistics, site_records=records,
                                       zones_geojson=store.get_bytes(
                                           object_store.imagery_bucket,
                                           f"{batch.batch_id}/{zones}") if zones else None,
                                       zones_name=zones or "zones")
        pdf = render_report(summary=summary, context=report_context)
        (workdir / "report.pdf").write_bytes(pdf)
        (workdir / "summary.json").write_bytes(summary.to_json())
        context.log.info(f"Report for {batch.batch_id}: {len(pdf) / 1e3:.0f} kB PDF, "
                         f"{len(summary.indices)} index section(s), {len(summary.zones)} zone(s)")
        files = tuple(OutputFile(name, workdir / name, entry(name).kind.value)
                      for name in ("summary.json", "report.pdf"))
        metadata = {"indices": ", ".join(summary.indices), "zones": len(summary.zones),
                    "pdf_bytes": len(pdf), "ignored_images": len(summary.ignored_images)}
        if "ndvi" in summary.indices and summary.indices["ndvi"].mean is not None:
            metadata["ndvi_mean"] = float(summary.indices["ndvi"].mean)
        yield dg.Output(PublishedFiles(files), metadata=metadata)


@dg.asset(
    partitions_def=imagery_batches,
    group_name="report",
    owners=_OWNERS,
    kinds={"json"},
    code_version="1",
    io_manager_key="report_io_manager",
    description="Presigned links to the report, summary and heatmaps, sent to the server-"
    "configured webhooks (HMAC-signed) and e-mail recipients; reports/<batch_id>/distribution.json "
    "records who was notified, when, the outcome and the links.",
)
def report_distribution(
    context: dg.AssetExecutionContext,
    batch_report,  # noqa: ARG001 - ordering only: loaded to require the report in this run
    object_store: ObjectStoreResource,
    notifier: NotifierResource,
):
    batch_id = context.partition_key
    store = object_store.store()
    expires = timedelta(seconds=notifier.link_expiry_s)
    expires_at = datetime.now(UTC).replace(microsecond=0) + expires
    summary = Summary.model_validate_json(
        store.get_bytes(object_store.report_bucket, batch_key(batch_id, "summary.json")))
    # The report, the summary and every map preview of the batch (catalogue kind PNG).
    previews = [o.key[len(batch_id) + 1:] for o in store.list_objects(
        object_store.heatmap_bucket, prefix=f"{batch_id}/")
        if (found := lookup(o.key[len(batch_id) + 1:])) and found[0].kind == Kind.PNG]
    links: dict[str, Link] = {}
    for bucket, name in [(object_store.report_bucket, "report.pdf"),
                         (object_store.report_bucket, "summary.json"),
                         *[(object_store.heatmap_bucket, name) for name in previews]]:
        url = store.presigned_get(bucket, batch_key(batch_id, name), expires_s=notifier.link_expiry_s)
        links[name] = Link(url=url, expires_at=expires_at)
    with decided_by_error_kind(context, batch_id):  # WEBHOOK_URLS without a secret: final
        record = notifier.distribute(summary, links)
    for n in record.notifications:
        log = context.log.info if n.outcome == "delivered" else context.log.warning
        log(f"{n.channel} {n.target}: {n.outcome} after {n.attempts} attempt(s)"
            + (f" ({n.error})" if n.error else ""))
    with tempfile.TemporaryDirectory(prefix="distribution-") as tmp:
        path = Path(tmp) / "distribution.json"
        path.write_bytes(record.to_json())
        yield dg.Output(
            PublishedFiles((OutputFile(path.name, path, entry(path.name).kind.value),)),
            metadata={"links": len(links),
                      "delivered": sum(n.outcome == "delivered" for n in record.notifications),
                      "failed": sum(n.outcome == "failed" for n in record.notifications)})
