"""The dynamic partitions: one partition per imagery batch (DESIGN.md §4)."""

import dagster as dg

imagery_batches = dg.DynamicPartitionsDefinition(name="imagery_batches")
