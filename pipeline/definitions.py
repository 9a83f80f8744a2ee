"""The code location `pipeline.definitions:defs` (DESIGN.md §4). It only assembles.

Resources are wired from the settings (DESIGN.md §5, `pipeline.settings`), read from the
environment once when the code location loads, never when this module is imported.
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
from pipeline.settings import Settings
from resources.dask import DaskResource
from resources.io_managers import ObjectStoreIOManager
from resources.limits import LimitsResource
from resources.notifier import NotifierResource
from resources.object_store import ObjectStoreResource


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    """The resources of the code location, from `settings` (default: the environment, read now)."""
    settings = Settings.from_env() if settings is None else settings
    object_store = ObjectStoreResource.from_settings(settings, secrets_as_env_vars=True)
    return {
        "object_store": object_store,
        "heatmap_io_manager": ObjectStoreIOManager(object_store=object_store, bucket_role="heatmap"),
        "report_io_manager": ObjectStoreIOManager(object_store=object_store, bucket_role="report"),
        "dask_resource": DaskResource(scheduler_address=settings.dask_scheduler_address,
                                      num_workers=settings.dask_num_workers,
                                      scratch_dir=dg.EnvVar("IMAGERY_SCRATCH_DIR").get_value()),
        "limits": LimitsResource(max_pixels=settings.max_pixels,
                                 min_valid_fraction=settings.min_valid_fraction),
        "notifier": NotifierResource.from_settings(settings),
    }


@dg.definitions
def defs() -> dg.Definitions:
    # The environment is read here, once, when the code location loads: a misconfiguration
    # (ConfigurationError naming the variable) keeps the location from loading.
    settings = Settings.from_env()
    return dg.Definitions(
        assets=[a.with_attributes(backfill_policy=PER_BATCH_BACKFILL) for a in (
            imagery_batch, vegetation_indices, thermal_maps, batch_report, report_distribution)],
        asset_checks=CHECKS,
        jobs=[process_imagery_batch],
        sensors=[build_upload_sensor(minimum_interval_seconds=settings.sensor_interval_s)],
        schedules=[build_reprocess_schedule(settings)],
        resources=build_resources(settings),
        # One process per run: a step process costs ~3 s of imports on a small machine, and the
        # parallelism is inside the raster steps (dask), which the `raster` pool runs one at a time.
        executor=dg.in_process_executor,
    )
