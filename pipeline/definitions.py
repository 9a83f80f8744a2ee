"""The code location `pipeline.definitions:defs` (DESIGN.md §4). It only assembles.

Resources are wired from the settings (DESIGN.md §5, `pipeline.settings`), read from the
environment once when the code location loads, never when this module is imported.
"""

from __future__ import annotations

import dagster as dg

from assets.analysis import for_registry, thermal_maps, vegetation_indices
from assets.batch import imagery_batch
from assets.checks import CHECKS
from assets.management_zones import management_zones
from assets.report import batch_report, report_distribution
from pipeline.core.cog import default_gdal_cache
from pipeline.core.registry import Registry, build_registry
from assets.sites import site_change, site_history
from pipeline.jobs import PER_BATCH_BACKFILL, process_imagery_batch
from pipeline.schedules import build_reprocess_schedule
from pipeline.sensors import build_upload_sensor
from pipeline.settings import Settings
from resources.cog_encoding import CogEncodingResource
from resources.dask import DaskResource
from resources.indices import IndexRegistryResource
from resources.io_managers import ObjectStoreIOManager
from resources.limits import LimitsResource
from resources.notifier import NotifierResource
from resources.object_store import ObjectStoreResource
from resources.zoning import ZoningResource


def build_resources(settings: Settings | None = None, registry: Registry | None = None
                    ) -> dict[str, object]:
    """The resources of the code location, from `settings` (default: the environment, read now)
    and the index `registry` (default: built from `settings.indices_file`)."""
    settings = Settings.from_env() if settings is None else settings
    registry = build_registry(indices_file=settings.indices_file) if registry is None else registry
    object_store = ObjectStoreResource.from_settings(settings, secrets_as_env_vars=True)
    return {
        "object_store": object_store,
        "heatmap_io_manager": ObjectStoreIOManager(object_store=object_store, bucket_role="heatmap"),
        "report_io_manager": ObjectStoreIOManager(object_store=object_store, bucket_role="report"),
        "dask_resource": DaskResource(scheduler_address=settings.dask_scheduler_address,
                                      num_workers=settings.dask_num_workers),
        "limits": LimitsResource(max_pixels=settings.max_pixels,
                                 min_valid_fraction=settings.min_valid_fraction),
        "notifier": NotifierResource.from_settings(settings),
        "index_registry": IndexRegistryResource.for_registry(registry),
        "zoning": ZoningResource.from_settings(settings),
        "cog_encoding": CogEncodingResource.from_settings(settings),
    }


@dg.definitions
def defs() -> dg.Definitions:
    # The environment is read here, once, when the code location loads: a misconfiguration
    # (ConfigurationError naming the variable) keeps the location from loading. So does a bad
    # IMAGERY_INDICES_FILE (naming the file, the entry and the fix): the index registry is built
    # here, once, and every index asset, check and report reads it.
    settings = Settings.from_env()
    default_gdal_cache()
    registry = build_registry(indices_file=settings.indices_file)
    return dg.Definitions(
        assets=[a.with_attributes(backfill_policy=PER_BATCH_BACKFILL) for a in (
            imagery_batch, for_registry(vegetation_indices, registry), thermal_maps,
            management_zones, site_change, batch_report, report_distribution, site_history)],
        asset_checks=CHECKS,
        jobs=[process_imagery_batch],
        sensors=[build_upload_sensor(minimum_interval_seconds=settings.sensor_interval_s)],
        schedules=[build_reprocess_schedule(settings)],
        resources=build_resources(settings, registry),
        # One process per run: a step process costs ~3 s of imports on a small machine, and the
        # parallelism is inside the raster steps (dask), which the `raster` pool runs one at a time.
        executor=dg.in_process_executor,
    )
