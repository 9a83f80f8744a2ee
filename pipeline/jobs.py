"""`process_imagery_batch`: materializes everything for one batch (DESIGN.md §4)."""

import dagster as dg

from pipeline.partitions import imagery_batches

process_imagery_batch = dg.define_asset_job(
    name="process_imagery_batch",
    selection=dg.AssetSelection.all(),
    partitions_def=imagery_batches,
    description="Validate one imagery batch, compute its indices, thermal maps and heatmaps, "
    "and build and distribute its report.",
)
