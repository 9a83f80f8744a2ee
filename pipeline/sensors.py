"""`imagery_upload_sensor`: new manifests become partitions and runs (DESIGN.md §1, §4).

The sensor is the only place that registers partitions. It changes nothing itself: it returns a
`SensorResult` with the partitions to add, one run request per new (or re-uploaded) manifest keyed
by batch id + manifest ETag, and the next cursor. Refused prefixes are logged with their reason and
never become partition keys (one bad key in a SensorResult would fail every tick).
"""

from __future__ import annotations

import dagster as dg

from pipeline.jobs import process_imagery_batch
from pipeline.partitions import imagery_batches
from pipeline.settings import DEFAULT_SENSOR_INTERVAL_S
from pipeline.uploads import ScanState, scan_uploads
from resources.object_store import ObjectStoreResource

MANIFEST_ETAG_TAG = "imagery/manifest_etag"


def build_upload_sensor(
    *, minimum_interval_seconds: int = DEFAULT_SENSOR_INTERVAL_S
) -> dg.SensorDefinition:
    """The sensor, ticking at most every `minimum_interval_seconds` (Settings.sensor_interval_s)."""
    @dg.sensor(
        name="imagery_upload_sensor",
        job=process_imagery_batch,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds a partition and requests a run for each new or re-uploaded "
        "`<batch_id>/manifest.json` in the uploads bucket.",
    )
    def imagery_upload_sensor(
        context: dg.SensorEvaluationContext, object_store: ObjectStoreResource
    ) -> dg.SensorResult:
        store = object_store.store()
        bucket = object_store.imagery_bucket
        result = scan_uploads(store, bucket, ScanState.from_cursor(context.cursor))
        for refusal in result.refused:
            context.log.warning(
                f"Refused upload prefix {refusal.prefix!r} in bucket {bucket!r}: {refusal.reason}. "
                "It will not be processed; re-upload it under a valid batch id."
            )
        if result.pending:
            context.log.info(f"{len(result.pending)} upload(s) without manifest.json yet: "
                             f"{', '.join(result.pending[:10])}")
        new_keys = [f.batch_id for f in result.found if not f.reupload]
        run_requests = [
            dg.RunRequest(
                run_key=f"{f.batch_id}:{f.etag}",
                partition_key=f.batch_id,
                tags={MANIFEST_ETAG_TAG: f.etag},
            )
            for f in result.found
        ]
        for f in result.found:
            context.log.info(
                f"{'Re-uploaded' if f.reupload else 'New'} batch {f.batch_id!r} (manifest ETag {f.etag})"
            )
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[imagery_batches.build_add_request(new_keys)] if new_keys else [],
            cursor=result.state.to_cursor(),
        )

    return imagery_upload_sensor
