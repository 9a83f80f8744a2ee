"""The code location `pipeline.definitions:defs` (DESIGN.md §4). It only assembles.

Resources are wired from the environment (DESIGN.md §5) when the code location loads, not when
this module is imported.
"""

from __future__ import annotations

import dagster as dg

from assets.analysis import thermal_maps, vegetation_indices
from assets.batch import imagery_batch
from assets.checks import CHECKS
from assets.report import batch_report, report_distribution
from pipeline.jobs import PER_BATCH_BACKFILL, process_imagery_batch
from pipeline.schedules import build_reprocess_schedule
from pipeline.sensors import build_upload_sensor
from resources.dask import DaskResource
from resources.io_managers import ObjectStoreIOManager
from resources.limits import LimitsResource
from resources.notifier import NotifierResource
from resources.object_store import ObjectStoreResource


def _env(name: str, default: str | None = None) -> str | None:
    return dg.EnvVar(name).get_value(default) or default


def build_resources() -> dict[str, object]:
    endpoint = _env("MINIO_ENDPOINT_URL")
    # Secrets stay EnvVar references (resolved in the run, never stored in run config).
    object_store = ObjectStoreResource(
        endpoint_url=endpoint,
        access_key=dg.EnvVar("MINIO_ACCESS_KEY") if endpoint else None,
        secret_key=dg.EnvVar("MINIO_SECRET_KEY") if endpoint else None,
        region=_env("MINIO_REGION", "us-east-1"),
        data_dir=_env("IMAGERY_DATA_DIR", "./data"),
        imagery_bucket=_env("IMAGERY_BUCKET", "imagery-uploads"),
        heatmap_bucket=_env("HEATMAP_BUCKET", "analysis-heatmaps"),
        report_bucket=_env("REPORT_BUCKET", "reports"),
        read_timeout_s=float(timeout) if (timeout := _env("IMAGERY_S3_READ_TIMEOUT_S")) else None,
        max_attempts=int(attempts) if (attempts := _env("IMAGERY_S3_MAX_ATTEMPTS")) else None,
    )
    workers = _env("DASK_NUM_WORKERS")
    return {
        "object_store": object_store,
        "heatmap_io_manager": ObjectStoreIOManager(object_store=object_store, bucket_role="heatmap"),
        "report_io_manager": ObjectStoreIOManager(object_store=object_store, bucket_role="report"),
        "dask_resource": DaskResource(scheduler_address=_env("DASK_SCHEDULER_ADDRESS"),
                                      num_workers=int(workers) if workers else None,
                                      scratch_dir=_env("IMAGERY_SCRATCH_DIR")),
        "limits": LimitsResource(
            max_pixels=int(_env("IMAGERY_MAX_PIXELS", "2000000000")),
            min_valid_fraction=float(_env("IMAGERY_MIN_VALID_FRACTION", "0.05")),
        ),
        "notifier": NotifierResource.from_env(),
    }


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[a.with_attributes(backfill_policy=PER_BATCH_BACKFILL) for a in (
            imagery_batch, vegetation_indices, thermal_maps, batch_report, report_distribution)],
        asset_checks=CHECKS,
        jobs=[process_imagery_batch],
        sensors=[build_upload_sensor()],
        schedules=[build_reprocess_schedule()],
        resources=build_resources(),
        # One process per run: a step process costs ~3 s of imports on a small machine, and the
        # parallelism is inside the raster steps (dask), which the `raster` pool runs one at a time.
        executor=dg.in_process_executor,
    )
