"""The code location `pipeline.definitions:defs` (DESIGN.md §4). It only assembles.

Resources are wired from the environment (DESIGN.md §5) when the code location loads, not when
this module is imported.
"""

from __future__ import annotations

import dagster as dg

from assets.batch import imagery_batch
from pipeline.jobs import process_imagery_batch
from pipeline.sensors import build_upload_sensor
from resources.limits import LimitsResource
from resources.object_store import ObjectStoreResource


def build_resources() -> dict[str, object]:
    endpoint = dg.EnvVar("MINIO_ENDPOINT_URL").get_value() or None
    # Secrets stay EnvVar references (resolved in the run, never stored in run config).
    return {
        "object_store": ObjectStoreResource(
            endpoint_url=endpoint,
            access_key=dg.EnvVar("MINIO_ACCESS_KEY") if endpoint else None,
            secret_key=dg.EnvVar("MINIO_SECRET_KEY") if endpoint else None,
            region=dg.EnvVar("MINIO_REGION").get_value("us-east-1"),
            data_dir=dg.EnvVar("IMAGERY_DATA_DIR").get_value("./data"),
            imagery_bucket=dg.EnvVar("IMAGERY_BUCKET").get_value("imagery-uploads"),
            heatmap_bucket=dg.EnvVar("HEATMAP_BUCKET").get_value("analysis-heatmaps"),
            report_bucket=dg.EnvVar("REPORT_BUCKET").get_value("reports"),
        ),
        "limits": LimitsResource(
            max_pixels=int(dg.EnvVar("IMAGERY_MAX_PIXELS").get_value("2000000000")),
            min_valid_fraction=float(dg.EnvVar("IMAGERY_MIN_VALID_FRACTION").get_value("0.05")),
        ),
    }


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[imagery_batch],
        jobs=[process_imagery_batch],
        sensors=[build_upload_sensor()],
        resources=build_resources(),
    )
