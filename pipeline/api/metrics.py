"""`GET /metrics` (DESIGN.md §6), Prometheus text format.

- `imagery_api_requests_total{route,method,status}`: counted by the middleware of `app.py`, per
  route template (`/tiles/{batch_id}/...`), so batch ids never become label values.
- `imagery_batches{outcome}`: batches by the outcome of their latest run of
  `process_imagery_batch` (succeeded, failed, final_failure = refused input or misconfiguration,
  in_progress), from the Dagster instance.
- `imagery_run_duration_seconds`: a histogram of those runs' durations (finished runs).
- `imagery_pixels_processed_total`: grid pixels (width × height of summary.json) over the
  batches that have a report.

The last three are computed when scraped, from at most `RUN_WINDOW` run records and one listing
of the report bucket, and kept for `CACHE_S` seconds, so a scrape costs a bounded number of
queries however often Prometheus asks; summaries are parsed once per ETag.
"""

from __future__ import annotations

import json
import threading
import time

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

RUN_WINDOW = 5000
CACHE_S = 30.0
BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
FINAL_TAG = "dagster/retry_on_asset_or_op_failure"


class PipelineCollector:
    """Batches, run durations and pixels, from the instance and the store, cached."""

    def __init__(self, context) -> None:
        self._ctx = context
        self._lock = threading.Lock()
        self._cached: tuple[float, list] | None = None
        self._pixels: dict[str, tuple[str, int]] = {}  # key -> (etag, pixels)

    def _runs(self) -> tuple[dict[str, int], list[float]]:
        outcomes = {"succeeded": 0, "failed": 0, "final_failure": 0, "in_progress": 0}
        durations: list[float] = []
        instance = self._ctx.instance
        if instance is None:
            return outcomes, durations
        import dagster as dg

        records = instance.get_run_records(
            filters=dg.RunsFilter(job_name="process_imagery_batch"), limit=RUN_WINDOW)
        seen = set()
        for record in records:  # newest first
            run = record.dagster_run
            if record.start_time and record.end_time:
                durations.append(record.end_time - record.start_time)
            partition = run.tags.get("dagster/partition")
            if partition is None or partition in seen:
                continue
            seen.add(partition)
            if run.status == dg.DagsterRunStatus.SUCCESS:
                outcomes["succeeded"] += 1
            elif run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                final = run.tags.get(FINAL_TAG) == "false"
                outcomes["final_failure" if final else "failed"] += 1
            else:
                outcomes["in_progress"] += 1
        return outcomes, durations

    def _pixel_total(self) -> int:
        store, bucket = self._ctx.store, self._ctx.config.report_bucket
        total = 0
        for info in store.list_objects(bucket):
            if not info.key.endswith("/summary.json") or info.key.count("/") != 1:
                continue
            cached = self._pixels.get(info.key)
            if cached is None or cached[0] != info.etag:
                grid = json.loads(store.get_bytes(bucket, info.key)).get("grid") or {}
                cached = (info.etag, int(grid.get("width", 0)) * int(grid.get("height", 0)))
                self._pixels[info.key] = cached
            total += cached[1]
        return total

    def collect(self):
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_S:
                self._cached = (time.monotonic(), self._families())
            return list(self._cached[1])

    def _families(self) -> list:
        outcomes, durations = self._runs()
        batches = GaugeMetricFamily("imagery_batches", "Batches by the outcome of their latest "
                                    "run of process_imagery_batch", labels=["outcome"])
        for outcome, count in outcomes.items():
            batches.add_metric([outcome], count)
        counts, total = [], 0
        for bound in BUCKETS:
            total = sum(1 for d in durations if d <= bound)
            counts.append(("+Inf" if bound == float("inf") else str(bound), total))
        runs = HistogramMetricFamily("imagery_run_duration_seconds",
                                     "Durations of finished runs of process_imagery_batch")
        runs.add_metric([], counts, sum_value=sum(durations))
        pixels = CounterMetricFamily("imagery_pixels_processed", "Grid pixels of the batches "
                                     "that have a report")
        pixels.add_metric([], self._pixel_total())
        return [batches, runs, pixels]


def build_registry(context) -> tuple[CollectorRegistry, Counter]:
    """A registry of its own per app (tests build several apps in one process)."""
    registry = CollectorRegistry()
    requests = Counter("imagery_api_requests", "API requests by route and status",
                       ["route", "method", "status"], registry=registry)
    registry.register(PipelineCollector(context))
    return registry, requests
