"""`process_imagery_batch`: materializes everything for one batch (DESIGN.md §4).

Operational policies, each defined and applied once: the retry policy on this job (the sensor, the
schedule and backfills of this job all run it), the backfill policy on every asset in
`pipeline.definitions`.

- `TRANSIENT_RETRY`: a failed step is retried up to 3 times after ~2, 4, 8 s (exponential backoff,
  ± jitter so steps that failed together do not retry together): long enough to ride out an object
  store restart or a SlowDown burst. Bad input is final: `assets.batch.bad_input` raises
  `dg.Failure(allow_retries=False)`, which Dagster's retry policy never retries
  (tests/test_schedule.py shows both).
- `PER_BATCH_BACKFILL`: a backfill launches one run per batch (`multi_run`, 1 partition per run).
  Each run holds one batch's rasters in memory and the `raster` pool admits one raster step at a
  time, so packing partitions into one run would gain no parallelism and only make a failure cost
  a whole group of batches; per-batch runs also retry, report and notify per batch.
"""

import dagster as dg

from pipeline.partitions import imagery_batches

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL,
                                 jitter=dg.Jitter.PLUS_MINUS)
PER_BATCH_BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
# A run failed for good (refused input, misconfiguration, a failed blocking check) carries this
# tag: dagster.yaml's run_retries then leave it alone, and so does the nightly reprocessing
# (assets/failures.py sets it, pipeline/schedules.py reads it).
NO_RUN_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false"}
# A run whose batch was refused as bad input carries this tag (assets/failures.py sets it); the
# publishing IO manager then publishes nothing more for it (resources/io_managers.py).
REFUSED_TAG = "imagery/refused"

process_imagery_batch = dg.define_asset_job(
    name="process_imagery_batch",
    selection=dg.AssetSelection.all(),
    partitions_def=imagery_batches,
    op_retry_policy=TRANSIENT_RETRY,
    description="Validate one imagery batch, compute its indices, thermal maps and heatmaps, "
    "and build and distribute its report.",
)
