"""The report (summary.json + report.pdf) and its distribution (links, webhooks, e-mail)."""

import tempfile
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dagster as dg

from assets.analysis import INDICES_CODE_VERSION, THERMAL_CODE_VERSION
from assets.failures import decided_by_error_kind
from pipeline.core.analysis import IndexAnalysis, OutputFile, ThermalAnalysis
from pipeline.core.report_build import build_context, build_summary, print_map
from pipeline.core.report_pdf import render_report
from pipeline.core.summary import Link, Summary
from pipeline.core.validation import ValidatedBatch
from pipeline.partitions import imagery_batches
from resources.io_managers import PUBLISHES, PublishedFiles
from resources.notifier import NotifierResource
from resources.object_store import ObjectStoreResource

REPORT_CODE_VERSION = "1"
_OWNERS = ["team:imagery"]


def code_version() -> str:
    try:
        package = version("imagery-pipeline")
    except PackageNotFoundError:  # running from a source tree without installing
        package = "0+unknown"
    return f"{package}+idx.{INDICES_CODE_VERSION}.th.{THERMAL_CODE_VERSION}.rep.{REPORT_CODE_VERSION}"


def _artifacts(store, bucket: str, batch_id: str, names) -> dict[str, str]:
    artifacts = {}
    for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
        name = info.key[len(batch_id) + 1:]
        if name.endswith(".tif") and name.removesuffix(".tif") in names:
            artifacts[name.removesuffix(".tif")] = store.uri(bucket, info.key)
    return dict(sorted(artifacts.items()))


@dg.asset(
    partitions_def=imagery_batches,
    group_name="report",
    owners=_OWNERS,
    kinds={"pdf", "json"},
    code_version=REPORT_CODE_VERSION,
    io_manager_key="report_io_manager",
    metadata={PUBLISHES: r"(report\.pdf|summary\.json)"},
    deps=["index_heatmaps", "thermal_heatmap", "index_rasters", "thermal_raster"],
    output_required=False,
    description="reports/<batch_id>/summary.json (DESIGN.md §3) and report.pdf, two renderings of "
    "one report model. Skipped when the manifest says auto_report: false.",
)
def batch_report(
    context: dg.AssetExecutionContext,
    imagery_batch: ValidatedBatch,
    index_statistics: IndexAnalysis | None,
    thermal_statistics: ThermalAnalysis | None,
    object_store: ObjectStoreResource,
):
    batch = imagery_batch
    if not batch.manifest.auto_report:
        context.log.info(f"Batch {batch.batch_id}: manifest.json says auto_report: false; the run "
                         "stops after the heatmaps: no report, no distribution.")
        return
    store = object_store.store()
    heatmaps = object_store.heatmap_bucket
    names = set(index_statistics.indices) if index_statistics else set()
    artifacts_for = names | ({f"{n}_heatmap" for n in names})
    if thermal_statistics is not None:
        artifacts_for |= {"thermal_c", "thermal_heatmap"}
    artifacts = _artifacts(store, heatmaps, batch.batch_id, artifacts_for)
    generated_at = datetime.now(UTC).replace(microsecond=0)
    summary = build_summary(batch=batch, indices=index_statistics, thermal=thermal_statistics,
                            artifacts=artifacts, generated_at=generated_at,
                            code_version=code_version())
    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        workdir = Path(tmp)
        maps = {}
        for name in [*sorted(names), *(["thermal"] if thermal_statistics else [])]:
            key = f"{batch.batch_id}/{name}_heatmap.png"
            path = workdir / f"{name}_heatmap.png"
            store.download_file(heatmaps, key, path)
            maps[name] = print_map(path, workdir / f"{name}_map.jpg")
        report_context = build_context(batch=batch, indices=index_statistics,
                                       thermal=thermal_statistics, maps=maps)
        pdf = render_report(summary=summary, context=report_context)
        (workdir / "report.pdf").write_bytes(pdf)
        (workdir / "summary.json").write_bytes(summary.to_json())
        context.log.info(f"Report for {batch.batch_id}: {len(pdf) / 1e3:.0f} kB PDF, "
                         f"{len(summary.indices)} index section(s), {len(summary.zones)} zone(s)")
        files = (OutputFile("summary.json", workdir / "summary.json", "json"),
                 OutputFile("report.pdf", workdir / "report.pdf", "pdf"))
        metadata = {"indices": ", ".join(summary.indices), "zones": len(summary.zones),
                    "pdf_bytes": len(pdf)}
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
    metadata={PUBLISHES: r"distribution\.json"},
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
        store.get_bytes(object_store.report_bucket, f"{batch_id}/summary.json"))
    links: dict[str, Link] = {}
    for bucket, key, name in [
        (object_store.report_bucket, f"{batch_id}/report.pdf", "report.pdf"),
        (object_store.report_bucket, f"{batch_id}/summary.json", "summary.json"),
        *[(object_store.heatmap_bucket, f"{batch_id}/{n}_heatmap.png", f"{n}_heatmap.png")
          for n in [*summary.indices, *(["thermal"] if summary.thermal else [])]],
    ]:
        url = store.presigned_get(bucket, key, expires_s=notifier.link_expiry_s)
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
            PublishedFiles((OutputFile("distribution.json", path, "json"),)),
            metadata={"links": len(links),
                      "delivered": sum(n.outcome == "delivered" for n in record.notifications),
                      "failed": sum(n.outcome == "failed" for n in record.notifications)})
